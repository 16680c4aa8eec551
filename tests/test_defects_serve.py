"""``strategist serve`` against upstreams that misbehave and clients that do: a streaming request
to an upstream that does not stream, deep or oversized bodies, non-boolean ``stream``, a busy
port, and a client that leaves while the upstream hangs. The app runs under uvicorn on 127.0.0.1;
its upstream is a small HTTP server on 127.0.0.1 reached through litellm as ``openai/NAME``."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import NORTHWIND, free_port, stop_process, wait_for_http
from runtime_library import CONVERSATIONS, add_strategies

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

pytestmark = pytest.mark.server

DAMAGED = CONVERSATIONS["damaged"]
HTML_PAGE = b"<html><body><h1>Down for maintenance</h1></body></html>"
COMPLETION = {
    "id": "chatcmpl-up",
    "object": "chat.completion",
    "created": 0,
    "model": "up",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


class Upstream:
    """An OpenAI-like server on 127.0.0.1. ``mode``: ``"json"`` answers every request (streaming
    or not) with a plain chat.completion JSON body, ``"html"`` with an HTML page, both 200;
    ``"half-stream"`` sends one SSE chunk, then garbage, and closes; ``"hang"`` never answers and
    records when the client drops the connection."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[tuple[float, dict]] = []
        self.dropped: list[float] = []  # when each hung request's connection was closed by the client
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, content_type: str, data: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                outer.requests.append((time.monotonic(), body))
                if outer.mode == "json":
                    return self._send("application/json", json.dumps(COMPLETION).encode())
                if outer.mode == "html":
                    return self._send("text/html", HTML_PAGE)
                if outer.mode == "half-stream":
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    chunk = {
                        "id": "x",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": "up",
                        "choices": [
                            {"index": 0, "delta": {"content": "Sorry to hear"}, "finish_reason": None}
                        ],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode() + b'data: {"id": "x", "cho')
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                # hang: wait, watching for the client to close its end.
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    readable, _, _ = select.select([self.connection], [], [], 0.02)
                    if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                        outer.dropped.append(time.monotonic())
                        break
                self.close_connection = True
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ThreadedServer:
    """The app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def library_db(tmp_path_factory):
    from strategist.packs import load_domain
    from strategist.store import Store

    path = tmp_path_factory.mktemp("serve_defects") / "lib.db"
    store = Store.open(path)
    add_strategies(store, load_domain(NORTHWIND / "domain.yaml"))
    store.close()
    return path


def _app(library_db, upstream_model, **kw):
    from strategist.runtime import StrategyLibrary
    from strategist.server import create_app

    library = StrategyLibrary.open(library_db, flush_every=10_000)
    return create_app(library, upstream_model, "northwind", **kw)


ADAPTERS = ["litellm", "native"]


def _litellm(upstream: Upstream, adapter: str = "litellm", **kw):
    """The upstream as ``openai/up``: through litellm, or through the native OpenAI-compatible
    adapter (the one ``openai/`` names get by default)."""
    from strategist.models.litellm_model import LiteLLMModel
    from strategist.models.openai_compat import OpenAICompatModel

    if adapter == "native":
        return OpenAICompatModel("openai/up", api_base=upstream.url, **kw)
    return LiteLLMModel("openai/up", api_base=upstream.url, **kw)


def _scripted():
    from strategist.models import FunctionModel

    return FunctionModel(lambda messages, sampling: "Please send a photo.", name="scripted/upstream")


def _is_openai_error(body: dict) -> bool:
    return set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}


# -- 9: a streaming request to an upstream that answers 200 with something else than SSE -------------
@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("mode", ["json", "html"])
def test_streaming_from_an_upstream_that_does_not_stream_is_a_502(library_db, mode, adapter):
    upstream = Upstream(mode)
    try:
        with ThreadedServer(_app(library_db, _litellm(upstream, adapter, retries=0, timeout=10))) as base:
            r = httpx.post(
                f"{base}/v1/chat/completions",
                json={"model": "x", "messages": DAMAGED, "stream": True},
                timeout=30,
            )
            assert r.status_code == 502, r.text
            assert _is_openai_error(r.json()) and r.json()["error"]["type"] == "upstream_error"
            assert "SSE" in r.json()["error"]["message"]
            # The official client sees an error too, not an empty reply that "stopped".
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=30)
            with pytest.raises(openai.APIStatusError) as info:
                list(client.chat.completions.create(model="x", messages=DAMAGED, stream=True))
            assert info.value.status_code == 502
            if mode == "json":  # without streaming, the same upstream's answer is a good one
                done = client.chat.completions.create(model="x", messages=DAMAGED)
                assert done.choices[0].message.content == "Hi!"
            else:
                r = httpx.post(f"{base}/v1/chat/completions", json={"model": "x", "messages": DAMAGED})
                assert r.status_code == 502
    finally:
        upstream.close()


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_stream_that_breaks_after_it_started_ends_with_an_error_event(library_db, adapter):
    upstream = Upstream("half-stream")
    try:
        with ThreadedServer(_app(library_db, _litellm(upstream, adapter, retries=0, timeout=10))) as base:
            with httpx.stream(
                "POST",
                f"{base}/v1/chat/completions",
                json={"model": "x", "messages": DAMAGED, "stream": True},
                timeout=30,
            ) as r:
                assert r.status_code == 200
                events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            last = json.loads(events[-2])
            assert _is_openai_error(last) and last["error"]["type"] == "upstream_error"
            assert not any('"finish_reason": "stop"' in e for e in events)
            pieces = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2]]
            assert "Sorry to hear" in pieces
    finally:
        upstream.close()


# -- 11: hardening ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scripted_base(library_db):
    """A server with a scripted upstream and a small body limit (2000 bytes)."""
    with ThreadedServer(_app(library_db, _scripted(), max_request_bytes=2000)) as base:
        yield base


def test_json_nested_too_deep_is_a_400_invalid_json(library_db):
    from strategist.server import DEFAULT_MAX_REQUEST_BYTES

    nest = b"[" * 100_000 + b"]" * 100_000
    deep_messages = b'{"model": "x", "messages": ' + nest + b"}"
    deep_extra = (
        b'{"model": "x", "messages": ' + json.dumps(DAMAGED).encode() + b', "metadata": ' + nest + b"}"
    )
    assert len(deep_messages) < DEFAULT_MAX_REQUEST_BYTES
    with ThreadedServer(_app(library_db, _scripted())) as base:
        url = f"{base}/v1/chat/completions"
        for body in (deep_messages, deep_extra):
            r = httpx.post(url, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, r.text
            assert _is_openai_error(r.json()) and r.json()["error"]["code"] == "invalid_json"
            assert "nested too deeply" in r.json()["error"]["message"]
        # Nesting the parser handles is just an unknown parameter, ignored.
        fine = b'{"model": "x", "messages": ' + json.dumps(DAMAGED).encode() + b', "metadata": '
        fine += b"[" * 500 + b"]" * 500 + b"}"
        assert httpx.post(url, content=fine, headers={"content-type": "application/json"}).status_code == 200


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "false", None])
def test_stream_must_be_a_json_boolean(scripted_base, value):
    r = httpx.post(
        f"{scripted_base}/v1/chat/completions", json={"model": "x", "messages": DAMAGED, "stream": value}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert _is_openai_error(r.json()) and error["param"] == "stream" and error["code"] == "invalid_value"


def test_stream_true_and_false_still_work(scripted_base):
    client = openai.OpenAI(base_url=f"{scripted_base}/v1", api_key="unused", max_retries=0)
    assert (
        client.chat.completions.create(model="x", messages=DAMAGED, stream=False).choices[0].message.content
    )
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="x", messages=DAMAGED, stream=True)
    )
    assert text == "Please send a photo."


def test_a_body_over_the_limit_is_a_413(scripted_base):
    big = {"model": "x", "messages": [{"role": "user", "content": "x" * 3000}]}
    r = httpx.post(f"{scripted_base}/v1/chat/completions", json=big)
    assert r.status_code == 413, r.text
    assert _is_openai_error(r.json()) and r.json()["error"]["code"] == "request_too_large"
    assert "2000 bytes" in r.json()["error"]["message"]

    # Without a Content-Length (chunked), it is counted as it arrives.
    def chunks():
        yield b'{"model": "x", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}]}'

    r = httpx.post(
        f"{scripted_base}/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "request_too_large"
    # Just under the limit is fine.
    small = {"model": "x", "messages": [{"role": "user", "content": "x" * 1500}]}
    assert httpx.post(f"{scripted_base}/v1/chat/completions", json=small).status_code == 200


def test_a_huge_declared_body_is_refused_before_it_is_sent(scripted_base):
    """A 10 GiB Content-Length is answered at once: the server does not wait for (or hold) it."""
    port = int(scripted_base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            b"content-type: application/json\r\ncontent-length: 10737418240\r\n\r\n{"
        )
        response = b""
        while b"\r\n\r\n" not in response:
            got = sock.recv(65536)
            assert got, "the server closed the connection without an answer"
            response += got
    assert response.startswith(b"HTTP/1.1 413 ")


# -- 11: a client that leaves while the upstream hangs -------------------------------------------------
@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_the_upstream_call(library_db, stream, adapter):
    upstream = Upstream("hang")
    # Before the upstream's own timeout (2 s) and its retry (1 s or more later), the client gives up.
    model = _litellm(upstream, adapter, retries=2, timeout=2.0)
    try:
        with ThreadedServer(_app(library_db, model)) as base:
            start = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(
                    f"{base}/v1/chat/completions",
                    json={"model": "x", "messages": DAMAGED, "stream": stream},
                    timeout=httpx.Timeout(10, read=0.5),
                )
            left = time.monotonic()
            while not upstream.dropped and time.monotonic() < start + 6:
                time.sleep(0.02)
            assert upstream.dropped, "the upstream connection was never closed"
            assert upstream.dropped[0] - left < 0.8, "the upstream call outlived its client"
            time.sleep(max(0.0, start + 4.5 - time.monotonic()))  # past the timeout and a retry
            assert len(upstream.requests) == 1, "the upstream was asked again for a client who had left"
    finally:
        upstream.close()


# -- 11: the command: a busy port, --max-request-bytes ------------------------------------------------
def _serve_cmd(library_db, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from strategist.cli import main; main()",
        "serve",
        "--db",
        str(library_db),
        "--domain",
        "northwind",
        "--upstream",
        "openai/up",
        "--api-base",
        "http://127.0.0.1:9/v1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATEGIST_")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return env


def test_a_busy_port_is_a_one_line_error(library_db, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            _serve_cmd(library_db, port),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=_env(),
            stdin=subprocess.DEVNULL,
        )
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert lines == [
        f"error: port {port} on 127.0.0.1 is in use (another server listens there): "
        "stop it or choose another --port"
    ], out.stderr
    assert "uvicorn" not in (out.stdout + out.stderr).lower()


def test_the_request_size_limit_is_an_option(library_db, tmp_path):
    help_text = subprocess.run(
        _serve_cmd(library_db, 8000, "--help"), capture_output=True, text=True, env=_env(), check=True
    ).stdout
    assert "--max-request-bytes" in help_text and "4194304" in help_text
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _serve_cmd(library_db, port, "--max-request-bytes", "1000", "--log-level", "warning"),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            env=_env(),
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_http(f"{base}/health", proc, log_path, 60)
            big = {"model": "x", "messages": [{"role": "user", "content": "x" * 1200}]}
            r = httpx.post(f"{base}/v1/chat/completions", json=big)
            assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        finally:
            stop_process(proc)
    assert Path(log_path).read_text().count("serving http://127.0.0.1") == 1
