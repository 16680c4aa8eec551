"""A fake OpenAI-compatible server on 127.0.0.1 for fault tests.

It answers /v1/chat/completions from the scripted world (tests/world.py), picking the role by
the requested model name (``teacher``, ``student``, ``customer``, ``judge``), and misbehaves on
the request numbers given in ``faults``: 429 with Retry-After, 500, malformed JSON, a truncated
body, a truncated stream, or a hang past the client's timeout.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import world

from strategist.models import Sampling

SCHEMA = re.compile(r"matching this JSON schema:\s*(\{.*\})\s*$", re.DOTALL)
FAULTS = ("429", "500", "malformed", "truncated", "truncated-stream", "hang")


def _sampling(body: dict) -> Sampling:
    last = body["messages"][-1]["content"]
    # The schema is in the prompt when the client sent no response_format (unknown models).
    found = SCHEMA.search(last)
    fmt = body.get("response_format") or {}
    schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema")
    schema_text = json.dumps(schema) if schema else (found.group(1) if found else None)
    return Sampling(
        temperature=body.get("temperature", 0.7),
        max_tokens=body.get("max_tokens", 256),
        seed=body.get("seed"),
        json_schema=schema_text,
        top_logprobs=body.get("top_logprobs", 0),
    )


class FakeOpenAI:
    def __init__(
        self, faults: dict[int, str] | None = None, *, hang_seconds: float = 5.0, retry_after: float = 1.0
    ) -> None:
        self.faults = dict(faults or {})
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.log: list[tuple[float, str, str]] = []  # (time, model, outcome) per request
        self.lock = threading.Lock()
        self.roles: dict[str, Callable] = {
            "teacher": world.Teacher(world.HELPFUL),
            "student": world.student_fn,
            "customer": world.Customer(),
            "judge": world.judge_fn,
        }
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self,
                status: int,
                data: bytes,
                headers: dict[str, str] | None = None,
                length: int | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data) if length is None else length))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def do_GET(self) -> None:
                self._send(
                    200,
                    json.dumps(
                        {
                            "object": "list",
                            "data": [{"id": r, "object": "model", "owned_by": "test"} for r in outer.roles],
                        }
                    ).encode(),
                )

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                model = str(body.get("model", "")).split("/")[-1]
                with outer.lock:
                    n = len(outer.log)
                    fault = outer.faults.get(n, "ok")
                    outer.log.append((time.monotonic(), model, fault))
                if fault == "429":
                    err = {"error": {"message": "rate limited", "type": "rate_limit_error"}}
                    return self._send(429, json.dumps(err).encode(), {"retry-after": str(outer.retry_after)})
                if fault == "500":
                    return self._send(500, b'{"error": {"message": "boom", "type": "server_error"}}')
                if fault == "malformed":
                    return self._send(200, b'{"id": "x", "choices": [ {"message": tru')
                if fault == "hang":
                    time.sleep(outer.hang_seconds)
                    return self._send(504, b'{"error": {"message": "too late", "type": "server_error"}}')
                text = outer.answer(model, body)
                if body.get("stream"):
                    return self._stream(text, truncated=fault == "truncated-stream")
                data = json.dumps(_completion(model, text)).encode()
                if fault == "truncated":
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
                    chunk = {
                        "id": "x",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": "m",
                        "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, model: str, body: dict) -> str:
        fn = self.roles.get(model)
        if fn is None:
            return "I am not sure."
        result = fn(body["messages"], _sampling(body))
        return str(result)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _completion(model: str, text: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": max(1, len(text) // 4),
            "total_tokens": 20 + max(1, len(text) // 4),
        },
    }
