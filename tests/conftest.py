from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# litellm must never fetch its price table from the network during tests.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parent.parent
NORTHWIND = ROOT / "scenarios" / "northwind"


@pytest.fixture
def northwind():
    from strategist.packs import load_domain

    return load_domain(NORTHWIND / "domain.yaml")


@pytest.fixture
def store(tmp_path):
    from strategist.store import Store

    s = Store.open(tmp_path / "test.db")
    yield s
    s.close()


# -- scripted models under model names ------------------------------------------------------------
@pytest.fixture
def register_scripted():
    """``register_scripted(name, fn)`` makes the model name resolve to a FunctionModel of ``fn``
    (a new one, with its own record of calls, each time), CLI included, for one test."""
    from strategist.models import FunctionModel, register_model, unregister_model

    names: list[str] = []

    def register(name: str, fn: Callable[..., Any]) -> str:
        register_model(name, lambda: FunctionModel(fn, name=name))
        names.append(name)
        return name

    yield register
    for name in names:
        unregister_model(name)


@pytest.fixture
def scripted(register_scripted):
    """The scripted world's roles (tests/world.py) as ``scripted/ROLE``; the CLI flags that pick them."""
    import world

    for role, fn in world.role_functions().items():
        register_scripted(f"scripted/{role}", fn)
    return [f"--{r}=scripted/{r}" for r in world.ROLES]


# -- a fake OpenAI-compatible server ----------------------------------------------------------------
SCHEMA_IN_PROMPT = re.compile(r"matching this JSON schema:\s*(\{.*\})\s*$", re.DOTALL)
FAULTS = ("429", "500", "malformed", "truncated", "truncated-stream", "hang", "echo-key")


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1: ``/v1/chat/completions`` (streaming or not) and
    ``/v1/models``, at ``url``.

    Each request is answered, in this order of precedence, by the next of ``script`` ((status,
    body) pairs, one a request), by the fault ``faults`` names for its number (counting from 0; a
    mapping or a function of the number), by ``default`` (one (status, body) for every request), or
    by the function of ``roles`` its model is named after (the provider prefix dropped;
    ``fn(messages, sampling) -> text``; the scripted world's roles unless given). Faults: 429 with
    Retry-After, 500, malformed JSON, a truncated body or stream, a hang past the client's timeout,
    and "echo-key", an ``error_status`` error quoting the request's Authorization header (as some
    providers and proxies do). Every request is recorded: ``requests`` (its body), ``auth`` ((model,
    Authorization header)) and ``log`` ((time, model, outcome))."""

    def __init__(
        self,
        faults: Mapping[int, str] | Callable[[int], str | None] | None = None,
        *,
        roles: Mapping[str, Callable[..., str]] | None = None,
        default: tuple[int, dict[str, Any]] | None = None,
        hang_seconds: float = 5.0,
        retry_after: float = 1.0,
        error_status: int = 400,
    ) -> None:
        import world

        faults = faults or {}
        self.fault_for = faults if callable(faults) else faults.get
        self.roles = dict(roles) if roles is not None else world.role_functions()
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.default = default
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.error_status = error_status
        self.requests: list[dict[str, Any]] = []
        self.auth: list[tuple[str, str]] = []
        self.log: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def failed(self) -> int:
        """Requests answered with a fault."""
        return sum(1 for _, _, outcome in self.log if outcome in FAULTS)

    def answer(self, model: str, body: dict[str, Any]) -> str:
        fn = self.roles.get(model)
        return "I am not sure." if fn is None else str(fn(body["messages"], _sampling(body)))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next(self, model: str, auth: str) -> tuple[str, tuple[int, dict[str, Any]] | None]:
        """(outcome, a fixed answer or None) for the next request."""
        with self.lock:
            n = len(self.log)
            fixed = self.script.pop(0) if self.script else None
            outcome = "script" if fixed else (self.fault_for(n) or ("default" if self.default else "ok"))
            self.log.append((time.monotonic(), model, outcome))
        if outcome == "echo-key":
            error = {"message": f"request rejected; you sent '{auth}'", "type": "invalid_request_error"}
            fixed = (self.error_status, {"error": error})
        return outcome, fixed or (self.default if outcome == "default" else None)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self, status: int, data: bytes, headers: Mapping[str, str] = {}, length: int = -1
            ) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data) if length < 0 else length))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def do_GET(self) -> None:
                models = [{"id": r, "object": "model", "owned_by": "test"} for r in outer.roles]
                self._send(200, json.dumps({"object": "list", "data": models}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                model = str(body.get("model", "")).split("/")[-1]
                auth = self.headers.get("authorization", "")
                with outer.lock:
                    outer.requests.append(body)
                    outer.auth.append((model, auth))
                outcome, fixed = outer._next(model, auth)
                if fixed is not None:
                    return self._send(fixed[0], json.dumps(fixed[1]).encode())
                if outcome == "429":
                    err = {"error": {"message": "rate limited", "type": "rate_limit_error"}}
                    return self._send(429, json.dumps(err).encode(), {"retry-after": str(outer.retry_after)})
                if outcome == "500":
                    return self._send(500, b'{"error": {"message": "boom", "type": "server_error"}}')
                if outcome == "malformed":
                    return self._send(200, b'{"id": "x", "choices": [ {"message": tru')
                if outcome == "hang":
                    time.sleep(outer.hang_seconds)
                    return self._send(504, b'{"error": {"message": "too late", "type": "server_error"}}')
                text = outer.answer(model, body)
                if body.get("stream"):
                    return self._stream(text, truncated=outcome == "truncated-stream")
                data = json.dumps(_completion(model, text)).encode()
                if outcome == "truncated":
                    self._send(200, data[: len(data) // 2], length=len(data))
                    self.close_connection = True
                    return None
                return self._send(200, data)

            def _stream(self, text: str, truncated: bool) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                pieces = [text[i : i + 8] for i in range(0, len(text), 8)] or [""]
                for i, piece in enumerate(pieces):
                    if truncated and i == len(pieces) // 2:
                        self.wfile.write(b'data: {"id": "x", "choi')
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
                    self.wfile.write(f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler


def _sampling(body: dict[str, Any]) -> Any:
    from strategist.models import Sampling

    # The schema is in the prompt when the client sent no response_format (unknown models).
    found = SCHEMA_IN_PROMPT.search(body["messages"][-1]["content"])
    fmt = body.get("response_format") or {}
    schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema")
    return Sampling(
        temperature=body.get("temperature", 0.7),
        max_tokens=body.get("max_tokens", 256),
        seed=body.get("seed"),
        json_schema=json.dumps(schema) if schema else (found.group(1) if found else None),
        top_logprobs=body.get("top_logprobs", 0),
    )


def _completion(model: str, text: str) -> dict[str, Any]:
    completion_tokens = max(1, len(text) // 4)
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": completion_tokens,
            "total_tokens": 20 + completion_tokens,
        },
    }


@pytest.fixture
def fake_openai():
    """``fake_openai(...)`` starts a FakeOpenAI (same arguments); every one is closed after the test."""
    servers: list[FakeOpenAI] = []

    def start(*args: Any, **kwargs: Any) -> FakeOpenAI:
        servers.append(FakeOpenAI(*args, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# -- the same tests on SQLite and PostgreSQL ------------------------------------------------------
POSTGRES_URL_ENV = "STRATEGIST_TEST_POSTGRES_URL"


@pytest.fixture
def postgres_db():
    """A new, empty PostgreSQL schema of its own, as a URL for ``Store.open`` (its search_path
    picks the schema); dropped after the test. Skips unless $STRATEGIST_TEST_POSTGRES_URL is set
    (.ci/postgres.sh prepares the server it points at)."""
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"${POSTGRES_URL_ENV} is not set (see .ci/postgres.sh)")
    import uuid

    import sqlalchemy as sa

    from strategist.store import database_url

    url = sa.engine.make_url(database_url(base))
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request, tmp_path):
    """A fresh, empty database as the path or URL ``Store.open`` takes: a SQLite file, then a
    PostgreSQL schema (see ``postgres_db``)."""
    if request.param == "sqlite":
        return str(tmp_path / "test.db")
    return request.getfixturevalue("postgres_db")


@pytest.fixture
def any_store(any_db):
    """A migrated Store on ``any_db``: SQLite, then PostgreSQL."""
    from strategist.store import Store

    s = Store.open(any_db)
    yield s
    s.close()


# -- a real OpenAI-compatible server for the embedded model ---------------------------------------
LLAMA_SERVER_STARTUP_SECONDS = 60


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()
            proc.wait(timeout=10)


def wait_for_http(url: str, proc, log_path: Path, seconds: float, ready=None) -> None:
    """Poll ``url`` until ``ready(response)``; fail with the process's log if it dies or times out."""
    import time

    import httpx

    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200 and (ready is None or ready(r)):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"server not ready after {seconds} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)


@contextmanager
def llama_cpp_server(log_dir: Path, *options: str) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port, serving the embedded
    model (SmolLM2) as 'smollm2' with ``options`` (``--n_ctx 4096``, ...); yields its base URL
    (without /v1). Skips when the server or the model file is not installed."""
    import subprocess
    import sys

    pytest.importorskip("llama_cpp.server")
    from strategist.errors import ModelUnavailableError
    from strategist.models.embedded import smollm2_path

    try:
        model_file = smollm2_path()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    port = free_port()
    log_path = log_dir / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_file), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--model_alias", "smollm2", *options]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_http(
                f"{base}/v1/models",
                proc,
                log_path,
                LLAMA_SERVER_STARTUP_SECONDS,
                ready=lambda r: "smollm2" in [m.get("id") for m in r.json().get("data", [])],
            )
            yield base
        finally:
            stop_process(proc)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """Base URL (without /v1) of the llama.cpp server for chat, one for the whole session."""
    with llama_cpp_server(tmp_path_factory.mktemp("llama_server"), "--n_ctx", "4096") as base:
        yield base
