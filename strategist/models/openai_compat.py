"""The native adapter for OpenAI-compatible chat endpoints: OpenAI's own API and the servers that
speak its chat API (vLLM, SGLang, llama.cpp, Ollama, TGI, proxies), over aiohttp.

Why not litellm here: on these endpoints a model call is one JSON body out and one in, and the
client's own CPU per call decides how many calls one process keeps in flight. litellm costs about
6 ms of CPU a call (and seconds to import), the ``openai`` SDK 1.4 to 2.6 ms; this adapter builds
the body itself and reads the answer as a dict, a small fraction of that (see ``benchmarks/``).

- **Names.** ``openai/MODEL`` (OpenAI, or any server with ``api_base``), and the known servers
  ``vllm/MODEL``, ``sglang/MODEL``, ``llamacpp/MODEL``, ``ollama/MODEL`` with their default local
  ports (``SERVERS``); MODEL is what the server is asked for in the body.
- **Connections.** One aiohttp session (one connection pool, kept alive) per event loop, base URL
  and key, shared by every model that uses them; closed by ``aclose()`` of the last model using it,
  and in any case when its event loop shuts down.
- **Several endpoints of one model.** ``api_base`` may list several base URLs (a list, or URLs
  separated by commas): each call goes to the endpoint with the fewest calls in flight; one that
  fails (cannot connect, times out, 5xx, 429) is left alone for a while (its Retry-After, else 1 s
  doubling to 30 s) and the call goes on at once to another: a failover is not a retry.
- **Retries** as litellm's adapter does them: 408/409/429/5xx, timeouts, broken connections and
  malformed answers are retried ``retries`` times with exponential backoff (1 s doubling up to
  30 s, with jitter), honouring Retry-After; 401/403/404 (rejected key, unknown model) raise
  ModelUnavailableError at once (the run stops); any other rejection (400, 422) is a ModelError
  with the server's reason, not retried. The key is blanked out of every error.
- **Structured output** (``json_mode``): ``schema`` sends ``response_format`` type ``json_schema``,
  ``object`` sends type ``json_object`` with the schema (llama.cpp's shape), ``none`` sends
  nothing; ``auto`` picks per server (``Server.json_mode``; for ``openai/`` names: ``schema`` where
  litellm's model table says the model supports it, else ``none``).
- **Prices** come from litellm's table, read as data (``model_table``): litellm is never imported
  by a call. Self-hosted servers have no price.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import time
import urllib.request
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from ..errors import ModelError, ModelUnavailableError, redact_secrets
from . import model_table
from .base import (
    ChatModel,
    Completion,
    Message,
    Sampling,
    StreamPiece,
    ToolCallDelta,
    ToolParams,
    normalise_messages,
    parse_openai_logprobs,
    parse_openai_tool_calls,
)
from .retry import backoff_seconds, retry_after_from_headers

T = TypeVar("T")


@dataclass(frozen=True)
class Server:
    """A kind of OpenAI-compatible endpoint and what differs between them."""

    prefix: str  # the model name's prefix: "vllm" in "vllm/Qwen/Qwen2.5-7B-Instruct"
    title: str
    base: str  # the default base URL (the server's default port on this machine)
    json_mode: str  # what json_mode "auto" means: schema | object | none | table (litellm's table)
    key_env: str | None = None  # the variable the key is read from when the role names none


OPENAI_BASE = "https://api.openai.com/v1"
SERVERS: dict[str, Server] = {
    s.prefix: s
    for s in (
        Server("openai", "OpenAI or any OpenAI-compatible server", OPENAI_BASE, "table", "OPENAI_API_KEY"),
        Server("vllm", "vLLM", "http://127.0.0.1:8000/v1", "schema"),
        Server("sglang", "SGLang", "http://127.0.0.1:30000/v1", "schema"),
        Server("llamacpp", "llama.cpp", "http://127.0.0.1:8080/v1", "object"),
        Server("ollama", "Ollama", "http://127.0.0.1:11434/v1", "schema"),
    )
}
# OpenAI's reasoning models take no temperature and no log-probabilities.
_REASONING = re.compile(r"^(o\d|gpt-5)")
MAX_TOP_LOGPROBS = 20  # OpenAI's limit, and vLLM's default --max-logprobs


def split_bases(api_base: str | Sequence[str] | None) -> list[str]:
    """Base URLs from a role's ``api_base``: one URL, URLs separated by commas, or a list."""
    if api_base is None:
        return []
    items = api_base.split(",") if isinstance(api_base, str) else list(api_base)
    return [b.strip().rstrip("/") for b in items if b and b.strip()]


# -- errors ----------------------------------------------------------------------------------------
class _Transient(Exception):
    """A failed attempt worth making again (elsewhere, or later)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _server_reason(data: bytes) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error", body)
        message = err.get("message") if isinstance(err, dict) else err
        if message:
            return " ".join(str(message).split())[:500]
    text = data.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:300] or "(empty body)"


# -- connections -------------------------------------------------------------------------------------
class _LoopSessions:
    """The sessions opened on one event loop, and who uses each."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str | None], Any] = {}
        self.users: dict[tuple[str, str | None], set[int]] = {}
        self.guard: Any = None  # an async generator the loop closes at its shutdown: it closes these


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSessions] = weakref.WeakKeyDictionary()


async def _close_at_shutdown(record: _LoopSessions) -> AsyncIterator[None]:
    """Started once per loop and kept: ``asyncio.run`` (and every runner) closes the async
    generators still open when its loop ends, so the loop's sessions close with it."""
    try:
        yield
    finally:
        for session in list(record.sessions.values()):
            with contextlib.suppress(Exception):
                await session.close()
        record.sessions.clear()


def _new_session() -> Any:
    import aiohttp

    # No connection limit of the client's own: the run's --concurrency and --per-model-concurrency
    # decide how many calls are in flight, and a call must never queue for a connection.
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, raise_for_status=False, trust_env=False)


async def _session(base: str, key: str | None, user: int) -> Any:
    loop = asyncio.get_running_loop()
    record = _loops.get(loop)
    if record is None:
        record = _loops[loop] = _LoopSessions()
    slot = (base, key)
    session = record.sessions.get(slot)
    if session is None or session.closed:
        session = record.sessions[slot] = _new_session()
        if record.guard is None:
            record.guard = _close_at_shutdown(record)
            await record.guard.__anext__()
    users = record.users.setdefault(slot, set())
    if user not in users:
        users.add(user)
    return session


async def _release(slots: set[tuple[str, str | None]], user: int) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    record = _loops.get(loop)
    if record is None:
        return
    for slot in slots:
        users = record.users.get(slot)
        if users is None:
            continue
        users.discard(user)
        if not users:
            del record.users[slot]
            session = record.sessions.pop(slot, None)
            if session is not None:
                await session.close()


@atexit.register
def _forget_open_sessions() -> None:
    """At exit, sessions of loops that never shut down (a daemon thread's) are dropped quietly
    instead of each printing an 'Unclosed client session' warning."""
    for record in list(_loops.values()):
        for session in record.sessions.values():
            with contextlib.suppress(Exception):
                connector = session.connector
                session.detach()
                if connector is not None:
                    connector._close()


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTP(S)_PROXY, NO_PROXY), read once."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


class _Endpoint:
    """One base URL of a model, with what routing needs: calls in flight and recent failures."""

    __slots__ = ("base", "down_until", "failures", "in_flight", "loop", "proxy", "session", "target", "url")

    def __init__(self, base: str) -> None:
        self.base = base
        self.url = base + "/chat/completions"
        self.proxy = _proxy_for(base)
        self.in_flight = 0
        self.failures = 0
        self.down_until = 0.0
        self.loop: Any = None  # the loop ``session`` belongs to
        self.session: Any = None
        self.target: Any = None  # ``url`` as a yarl.URL

    def failed(self, retry_after: float | None) -> None:
        self.failures += 1
        pause = retry_after if retry_after is not None else min(2.0 ** (self.failures - 1), 30.0)
        self.down_until = time.monotonic() + pause

    def succeeded(self) -> None:
        if self.failures:
            self.failures = 0
            self.down_until = 0.0


# -- the adapter ---------------------------------------------------------------------------------------
class OpenAICompatModel(ChatModel):
    """A chat model behind an OpenAI-compatible endpoint (or several endpoints of the same model)."""

    def __init__(
        self,
        name: str,
        *,
        server: str = "openai",
        model_id: str | None = None,
        api_base: str | Sequence[str] | None = None,
        api_key_env: str | None = None,
        json_mode: str = "auto",
        timeout: float = 120.0,
        retries: int = 4,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if server not in SERVERS:
            raise ModelUnavailableError(name, f"unknown server kind {server!r}")
        self.name = name
        self.server = SERVERS[server]
        prefix = self.server.prefix + "/"
        self.model_id = model_id or (name[len(prefix) :] if name.startswith(prefix) else name)
        bases = split_bases(api_base)
        if not bases and server == "openai":
            bases = split_bases(os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE"))
        self.bases = bases or [self.server.base]
        self.official = all(urlsplit(b).hostname == "api.openai.com" for b in self.bases)
        self.api_key_env = api_key_env
        self.json_mode = json_mode
        self.timeout = timeout
        self.retries = retries
        self.extra = dict(extra or {})
        self._endpoints = [_Endpoint(b) for b in self.bases]
        self._turn = 0  # rotates the first choice among equally busy endpoints
        self._key: str | None = None
        self._headers: dict[str, str] | None = None
        self._slots: set[tuple[str, str | None]] = set()
        self._formats: dict[str, dict[str, Any] | None] = {}
        self._mode: str | None = None
        self._reasoning = self.official and bool(_REASONING.match(self.model_id))
        self._max_field = "max_completion_tokens" if self.official else "max_tokens"
        # Only OpenAI's names are in the price table; a self-hosted server has no price.
        self._table_name = f"openai/{self.model_id}" if self.server.prefix == "openai" else None
        self._timeout: Any = None
        self._stream_timeout: Any = None

    # -- request ---------------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        """The request headers, with the key: the variable the role names, else the server's own
        (OPENAI_API_KEY for openai/ names), else none (self-hosted servers usually want none)."""
        if self._headers is None:
            key: str | None = None
            if self.api_key_env:
                key = os.environ.get(self.api_key_env)
                if not key:
                    raise ModelUnavailableError(
                        self.name, f"environment variable {self.api_key_env} is not set"
                    )
            elif self.server.key_env:
                key = os.environ.get(self.server.key_env) or None
            if key is None and self.official:
                raise ModelUnavailableError(
                    self.name, "no API key: set OPENAI_API_KEY (or name the variable with api_key_env)"
                )
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            self._key, self._headers = key, headers
        return self._headers

    def _response_format(self, schema_text: str) -> dict[str, Any] | None:
        if schema_text in self._formats:
            return self._formats[schema_text]
        if self._mode is None:
            mode = self.json_mode if self.json_mode != "auto" else self.server.json_mode
            if mode == "table":
                ok = self._table_name is not None and model_table.supports_response_schema(self._table_name)
                mode = "schema" if ok else "none"
            self._mode = mode
        fmt: dict[str, Any] | None = None
        if self._mode == "schema":
            fmt = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": json.loads(schema_text)},
            }
        elif self._mode == "object":
            fmt = {"type": "json_object", "schema": json.loads(schema_text)}
        self._formats[schema_text] = fmt
        return fmt

    def _body(
        self, messages: Sequence[Message], s: Sampling, tools: ToolParams | None, stream: bool
    ) -> bytes:
        body: dict[str, Any] = {"model": self.model_id, "messages": normalise_messages(messages)}
        if not self._reasoning:
            body["temperature"] = s.temperature
        body[self._max_field] = s.max_tokens
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        if tools is not None:
            body.update(tools.request_fields())
        if s.top_logprobs and not stream and not self._reasoning:
            body["logprobs"] = True
            body["top_logprobs"] = min(s.top_logprobs, MAX_TOP_LOGPROBS)
        if s.json_schema:
            fmt = self._response_format(s.json_schema)
            if fmt is not None:
                body["response_format"] = fmt
        if self.extra:
            body.update(self.extra)
        if stream:
            body["stream"] = True
        return json.dumps(body).encode()

    # -- routing and retries -----------------------------------------------------------------------
    def _pick(self, tried: list[_Endpoint]) -> _Endpoint | None:
        """The endpoint for the next attempt: not yet tried in this round, up before down, then
        the fewest calls in flight (ties in turn)."""
        eps = self._endpoints
        if len(eps) == 1:
            return None if tried else eps[0]
        now = time.monotonic()
        n = len(eps)
        self._turn = (self._turn + 1) % n
        best: _Endpoint | None = None
        best_key: tuple[float, int] | None = None
        for i in range(n):
            ep = eps[(self._turn + i) % n]
            if ep in tried:
                continue
            key = (ep.down_until if ep.down_until > now else 0.0, ep.in_flight)
            if best_key is None or key < best_key:
                best, best_key = ep, key
        return best

    async def _attempts(self, send: Callable[[_Endpoint], Awaitable[T]]) -> T:
        """``send`` on an endpoint; on a transient failure, at once on another endpoint not tried
        yet, else (every endpoint tried) after a backoff, ``retries`` times."""
        self._auth()
        retry = 0
        while True:
            tried: list[_Endpoint] = []
            last: _Transient | None = None
            while (ep := self._pick(tried)) is not None:
                tried.append(ep)
                ep.in_flight += 1
                try:
                    result = await send(ep)
                except _Transient as exc:
                    last = exc
                    ep.failed(exc.retry_after)
                    continue
                finally:
                    ep.in_flight -= 1
                ep.succeeded()
                return result
            assert last is not None
            retry += 1
            if retry > self.retries:
                raise ModelError(self.name, self._redact(str(last)))
            await asyncio.sleep(last.retry_after if last.retry_after is not None else backoff_seconds(retry))

    def _redact(self, text: str) -> str:
        return redact_secrets(text, [self._key])

    def _timeouts(self) -> tuple[Any, Any]:
        if self._timeout is None:
            import aiohttp

            self._timeout = aiohttp.ClientTimeout(total=self.timeout)
            self._stream_timeout = aiohttp.ClientTimeout(
                total=None, connect=self.timeout, sock_read=self.timeout
            )
        return self._timeout, self._stream_timeout

    async def _open(self, ep: _Endpoint, body: bytes, stream: bool) -> Any:
        """POST ``body``; the response once its status says it is an answer (else the failure)."""
        import aiohttp

        session = ep.session
        if session is None or ep.loop is not asyncio.get_running_loop() or session.closed:
            from yarl import URL  # aiohttp's own URL type: parsed once, not at every request

            session = ep.session = await _session(ep.base, self._key, id(self))
            ep.loop = asyncio.get_running_loop()
            ep.target = URL(ep.url)
            self._slots.add((ep.base, self._key))
        timeout = self._timeouts()[1 if stream else 0]
        try:
            resp = await session.post(
                ep.target, data=body, headers=self._headers, timeout=timeout, proxy=ep.proxy
            )
        except TimeoutError:
            raise _Transient(f"no answer from {ep.base} within {self.timeout:g} s") from None
        except aiohttp.InvalidURL as exc:
            raise ModelUnavailableError(self.name, f"invalid api_base {ep.base}: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            raise _Transient(f"cannot connect to {ep.base} ({exc.os_error or exc})") from None
        except aiohttp.ClientError as exc:
            raise _Transient(f"request to {ep.base} failed: {type(exc).__name__}: {exc}") from None
        if resp.status != 200:
            try:
                data = await resp.read()
            except (TimeoutError, aiohttp.ClientError):
                data = b""
            finally:
                resp.release()
            self._fail(ep, resp.status, data, resp.headers)
        return resp

    def _fail(self, ep: _Endpoint, status: int, data: bytes, headers: Any) -> NoReturn:
        reason = self._redact(f"HTTP {status} from {ep.base}: {_server_reason(data)}")
        if status in (401, 403, 404):
            raise ModelUnavailableError(self.name, reason)
        if status in (408, 409, 429) or status >= 500:
            raise _Transient(reason, retry_after_from_headers(headers))
        raise ModelError(self.name, reason)

    async def _send(self, ep: _Endpoint, body: bytes) -> dict[str, Any]:
        import aiohttp

        resp = await self._open(ep, body, stream=False)
        try:
            data = await resp.read()
        except TimeoutError:
            raise _Transient(f"no answer from {ep.base} within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise _Transient(f"the answer from {ep.base} broke off: {type(exc).__name__}: {exc}") from None
        finally:
            resp.release()
        try:
            answer: dict[str, Any] = json.loads(data)
            if not answer["choices"]:  # an answer without a choice is a broken one
                raise IndexError
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Transient(f"malformed answer from {ep.base}: {_server_reason(data)[:200]}") from None
        return answer

    # -- the interface -------------------------------------------------------------------------------
    async def complete(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> Completion:
        s = sampling or Sampling()
        body = self._body(messages, s, tools, stream=False)
        start = time.perf_counter()
        answer = await self._attempts(lambda ep: self._send(ep, body))
        choice = answer["choices"][0]
        message = choice.get("message") or {}
        usage = answer.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        return Completion(
            text=message.get("content") or "",
            model=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            logprobs=parse_openai_logprobs(choice.get("logprobs")) if s.top_logprobs else None,
            latency_ms=(time.perf_counter() - start) * 1000,
            cost_usd=self.price(prompt_tokens, completion_tokens) if self._table_name else None,
            tool_calls=parse_openai_tool_calls(message.get("tool_calls")),
            finish_reason=choice.get("finish_reason"),
        )

    async def stream(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> AsyncIterator[StreamPiece]:
        """Pieces of the reply as the server sends them (server-sent events): text, and the pieces
        of tool calls (``delta.tool_calls``). Opening the stream is retried like complete(); once
        it is open, an error (a broken connection, a malformed event, the stream ending before its
        end) ends it with a ModelError. An answer that is not an event stream is an error too."""
        import aiohttp

        body = self._body(messages, sampling or Sampling(), tools, stream=True)
        opened: list[_Endpoint] = []

        async def open_stream(ep: _Endpoint) -> Any:
            resp = await self._open(ep, body, stream=True)
            opened.append(ep)
            return resp

        resp = await self._attempts(open_stream)
        ep = opened[-1]
        ep.in_flight += 1
        said_something = finished = False
        try:
            if "text/event-stream" not in resp.headers.get("content-type", ""):
                raise ModelError(
                    self.name, "the streamed answer held no completion events (the server did not send SSE)"
                )
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue  # blank lines between events, comments, event: and id: fields
                data = line[5:].strip()
                if data == b"[DONE]":
                    finished = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise ModelError(self.name, f"a malformed event in the stream from {ep.base}") from None
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):
                    raise ModelError(self.name, self._redact(f"the stream failed: {_server_reason(data)}"))
                for choice in chunk.get("choices") or []:
                    if choice.get("finish_reason"):
                        finished = True
                    delta = choice.get("delta") or {}
                    piece = delta.get("content")
                    said_something = said_something or piece is not None or bool(delta.get("role"))
                    if piece:
                        yield piece
                    for call in delta.get("tool_calls") or []:
                        said_something = True
                        function = call.get("function") or {}
                        yield ToolCallDelta(
                            index=int(call.get("index") or 0),
                            id=call.get("id"),
                            name=function.get("name"),
                            arguments=function.get("arguments") or "",
                        )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ModelError(self.name, self._redact(f"the stream from {ep.base} broke off: {exc}")) from None
        finally:
            ep.in_flight -= 1
            if finished:
                resp.release()  # the connection goes back to the pool
            else:
                resp.close()  # cancelled or broken: the server stops generating for nobody
        if not said_something and not finished:
            raise ModelError(
                self.name, "the streamed answer held no completion events (the server did not send SSE)"
            )
        if not finished:
            raise ModelError(self.name, f"the stream from {ep.base} ended before the answer did")

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self._table_name is None:
            return None
        return model_table.price_usd(self._table_name, prompt_tokens, completion_tokens)

    def count_tokens(self, text: str) -> int | None:
        """Tokens by litellm's counter where litellm is installed (loaded on the first count: the
        runtime's strategy budget uses it, a grow never does); else None (the caller estimates)."""
        try:
            from .litellm_model import import_litellm

            lt = import_litellm()
            return int(lt.token_counter(model=f"openai/{self.model_id}", text=text))
        except Exception:
            return None

    async def aclose(self) -> None:
        slots, self._slots = self._slots, set()
        for ep in self._endpoints:
            ep.session = ep.loop = None
        await _release(slots, id(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.bases!r})"
