"""Adapter for any litellm provider (``openai/gpt-4o``, ``anthropic/...``, a self-hosted
OpenAI-compatible server via ``api_base``). litellm is imported on first use only: importing it
costs seconds and, unless told otherwise, reaches for the network."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ..errors import ModelError, ModelUnavailableError, one_line, redact_secrets
from .base import (
    ChatModel,
    Completion,
    Message,
    Sampling,
    StreamPiece,
    ToolCallDelta,
    ToolParams,
    get_field,
    normalise_messages,
    parse_openai_logprobs,
    parse_openai_tool_calls,
    sampling_kwargs,
)
from .retry import retry_after_from_headers

_litellm: Any = None


def import_litellm() -> Any:
    global _litellm
    if _litellm is None:
        # Use the price table bundled with the package instead of downloading one at import.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError as exc:  # pragma: no cover - litellm is a core dependency
            raise ModelUnavailableError("litellm", "the litellm package is not installed") from exc
        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm


def connection_kwargs(model: str, api_base: str | None, api_key_env: str | None) -> dict[str, Any]:
    """Where a litellm call goes and the key it carries: ``api_base``, and the value of the
    variable ``api_key_env`` names (else litellm reads the provider's own variable). Shared by the
    chat adapter and the embedder, so both reach a server the same way."""
    kwargs: dict[str, Any] = {}
    if api_base:
        kwargs["api_base"] = api_base
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ModelUnavailableError(model, f"environment variable {api_key_env} is not set")
        kwargs["api_key"] = key
    elif api_base and model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
        kwargs["api_key"] = "none"  # self-hosted servers usually want no key, the client wants one
    return kwargs


def _litellm_errors(*names: str) -> tuple[type[BaseException], ...]:
    return tuple(getattr(_litellm, n) for n in names if _litellm is not None and hasattr(_litellm, n))


def _is_fatal(exc: BaseException) -> bool:
    """Errors that every later call would hit too: bad credentials, unknown model or provider."""
    if isinstance(exc, _litellm_errors("AuthenticationError", "PermissionDeniedError", "NotFoundError")):
        return True
    if getattr(exc, "status_code", None) in (401, 403, 404):
        return True
    return "LLM Provider NOT provided" in str(exc)


def _is_transient(exc: BaseException) -> bool:
    transient = _litellm_errors(
        "RateLimitError",
        "APIConnectionError",
        "Timeout",
        "InternalServerError",
        "ServiceUnavailableError",
        "BadGatewayError",
    )
    return isinstance(exc, transient)


def price_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """What litellm's price table says these tokens cost on ``model``; None if it does not know it."""
    lt = import_litellm()
    try:
        p, c = lt.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # litellm raises for models missing from its table
        return None
    return float(p) + float(c)


def _cost(resp: Any) -> float | None:
    """The call's price from litellm's table; None for models it does not know (self-hosted ones)."""
    hidden = getattr(resp, "_hidden_params", None) or {}
    cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
    return float(cost) if isinstance(cost, int | float) else None


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The wait a rate-limited server asked for (Retry-After / retry-after-ms headers), if any."""
    if exc is None:
        return None
    for holder in (getattr(exc, "response", None), exc):
        headers = getattr(holder, "headers", None) or getattr(holder, "litellm_response_headers", None)
        asked = retry_after_from_headers(headers)
        if asked is not None:
            return asked
    return None


class _WaitRetryAfter:
    """Honour the server's Retry-After when it gives one, else back off exponentially with jitter."""

    def __init__(self) -> None:
        self.fallback = wait_exponential_jitter(initial=1, max=30)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_seconds(exc)
        return asked if asked is not None else float(self.fallback(state))


class LiteLLMModel(ChatModel):
    """Any model litellm can reach. Transient errors are retried with exponential backoff.

    ``litellm/NAME`` is NAME through litellm (the explicit choice of this adapter where the name
    would otherwise go to the native one): the ledger shows the name as written, litellm gets NAME,
    and the cache files the answers under NAME (the same model answers either way).
    """

    def __init__(
        self,
        name: str,
        *,
        api_base: str | None = None,
        api_key_env: str | None = None,
        json_mode: str = "auto",
        timeout: float = 120.0,
        retries: int = 4,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.target = name.removeprefix("litellm/")  # the name litellm is given
        self.api_base = api_base
        self.api_key_env = api_key_env
        self.json_mode = json_mode
        self.timeout = timeout
        self.retries = retries
        self.extra = dict(extra or {})

    def _response_format(self, schema_text: str) -> dict[str, Any] | None:
        schema = json.loads(schema_text)
        mode = self.json_mode
        if mode == "auto":
            lt = import_litellm()
            try:
                mode = "schema" if lt.supports_response_schema(model=self.target) else "none"
            except Exception:
                mode = "none"
        if mode == "schema":
            return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        if mode == "object":
            # The shape llama.cpp's server and several self-hosted servers accept.
            return {"type": "json_object", "schema": schema}
        return None

    def _request(
        self, messages: Sequence[Message], s: Sampling, tools: ToolParams | None = None
    ) -> dict[str, Any]:
        """The litellm call's arguments, shared by complete() and stream()."""
        kwargs: dict[str, Any] = {
            "model": self.target,
            "messages": normalise_messages(messages),
            **sampling_kwargs(s),
            "timeout": self.timeout,
            # One retry loop (below, honouring Retry-After), not the client's hidden one as well.
            "max_retries": 0,
            # Parameters a provider does not support (e.g. seed) are left out instead of failing.
            # Per call, not litellm.drop_params: with the global flag, litellm 1.110 answers a
            # 400/422 from the server with None instead of raising the error.
            "drop_params": True,
            **self.extra,
        }
        if tools is not None:
            kwargs.update(tools.request_fields())
        if s.top_logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = s.top_logprobs
        if s.json_schema:
            fmt = self._response_format(s.json_schema)
            if fmt:
                kwargs["response_format"] = fmt
        return {**kwargs, **connection_kwargs(self.target, self.api_base, self.api_key_env)}

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        """litellm.acompletion with retries on transient errors; failures become our errors."""
        lt = import_litellm()
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.retries + 1),
                wait=_WaitRetryAfter(),
                retry=retry_if_exception(_is_transient),
                reraise=True,
            ):
                with attempt:
                    resp = await lt.acompletion(**kwargs)
                    if resp is None:  # never a valid answer; seen with litellm's global drop_params
                        raise ModelError(self.name, "the provider's client returned no response")
        except Exception as exc:
            # The key goes nowhere but the request: servers and clients echo it in errors.
            message = redact_secrets(one_line(exc), [kwargs.get("api_key")])
            if _is_fatal(exc):
                raise ModelUnavailableError(self.name, message) from exc
            raise ModelError(self.name, message) from exc
        return resp

    async def complete(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> Completion:
        s = sampling or Sampling()
        kwargs = self._request(messages, s, tools)
        start = time.perf_counter()
        resp = await self._call(kwargs)
        choice = resp.choices[0]
        usage = get_field(resp, "usage")
        return Completion(
            text=get_field(choice.message, "content") or "",
            model=self.name,
            prompt_tokens=int(get_field(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(get_field(usage, "completion_tokens", 0) or 0),
            logprobs=parse_openai_logprobs(get_field(choice, "logprobs")) if s.top_logprobs else None,
            cost_usd=_cost(resp),
            latency_ms=(time.perf_counter() - start) * 1000,
            tool_calls=parse_openai_tool_calls(get_field(choice.message, "tool_calls")),
            finish_reason=get_field(choice, "finish_reason"),
        )

    async def stream(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> AsyncIterator[StreamPiece]:
        """Pieces of the reply as the provider sends them (``stream=True``): text, and the pieces
        of tool calls as they come (``delta.tool_calls``).

        Opening the stream is retried like complete(); once text has arrived, an error ends the
        stream with a ModelError (a retry would repeat text already handed out).
        """
        kwargs = {**self._request(messages, sampling or Sampling(), tools), "stream": True}
        kwargs.pop("logprobs", None)
        kwargs.pop("top_logprobs", None)
        resp = await self._call(kwargs)
        said_something = False  # a role or any content, even empty, came from the provider
        try:
            async for chunk in resp:
                choices = get_field(chunk, "choices") or []
                delta = get_field(choices[0], "delta") if choices else None
                if delta is None:
                    continue
                piece = get_field(delta, "content")
                said_something = said_something or piece is not None or bool(get_field(delta, "role"))
                if piece:
                    yield piece
                for call in get_field(delta, "tool_calls") or []:
                    said_something = True
                    function = get_field(call, "function") or {}
                    yield ToolCallDelta(
                        index=int(get_field(call, "index", 0) or 0),
                        id=get_field(call, "id"),
                        name=get_field(function, "name"),
                        arguments=get_field(function, "arguments") or "",
                    )
        except Exception as exc:
            raise ModelError(self.name, redact_secrets(one_line(exc), [kwargs.get("api_key")])) from exc
        # litellm ends a stream that held no event at all (a server answering stream=true with a
        # plain JSON body, an HTML error page, nothing) with a finish chunk of its own making:
        # nothing came from the provider, which is a broken answer, not an empty one.
        if not said_something and not getattr(resp, "received_any_finish_reason", False):
            raise ModelError(
                self.name, "the streamed answer held no completion events (the server did not send SSE)"
            )

    @property
    def cache_identity(self) -> str:
        return self.target

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return price_usd(self.target, prompt_tokens, completion_tokens)

    def count_tokens(self, text: str) -> int | None:
        """Tokens by litellm's counter: the model's tokenizer where litellm knows it, else tiktoken's."""
        try:
            return int(import_litellm().token_counter(model=self.target, text=text))
        except Exception:  # an unknown model or a tokenizer that cannot load: the caller estimates
            return None
