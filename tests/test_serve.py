"""``strategist serve`` for real: the OpenAI-compatible endpoint run by uvicorn on 127.0.0.1, its
upstream llama.cpp's OpenAI-compatible server serving the embedded model, exercised with the
official ``openai`` client. Error paths that need a failing upstream run the app in a thread
with a scripted upstream."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import NORTHWIND, free_port, llama_cpp_server, stop_process, wait_for_http
from runtime_library import CONVERSATIONS, add_strategies

from strategist.errors import ModelError
from strategist.models import FunctionModel, Sampling

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

pytestmark = pytest.mark.server

DAMAGED = CONVERSATIONS["damaged"]
SERVE_STARTUP_SECONDS = 60


def _make_library(path: Path) -> dict[str, int]:
    from strategist.packs import load_domain
    from strategist.store import Store

    store = Store.open(path)
    ids = add_strategies(store, load_domain(NORTHWIND / "domain.yaml"))
    store.close()
    return ids


@pytest.fixture(scope="module")
def library_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "lib.db"
    return path, _make_library(path)


@pytest.fixture(scope="module")
def served(llama_server, library_db, tmp_path_factory):
    """Base URL of ``strategist serve`` (a subprocess) forwarding to the llama.cpp server."""
    path, _ = library_db
    port = free_port()
    workdir = tmp_path_factory.mktemp("serve_cwd")  # no strategist.toml here
    log_path = workdir / "serve.log"
    exe = Path(sys.executable).parent / "strategist"
    cmd = [str(exe), "serve", "--db", str(path), "--domain", "northwind", "--upstream", "openai/smollm2"]
    cmd += ["--api-base", f"{llama_server}/v1", "--host", "127.0.0.1", "--port", str(port)]
    # A short prompt for requests without a system message keeps the tiny model's calls quick.
    cmd += ["--model-name", "smollm2", "--k", "2", "--system-prompt", "You are a support agent."]
    cmd += ["--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATEGIST_")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir, env=env
        )
        try:
            wait_for_http(f"{base}/health", proc, log_path, SERVE_STARTUP_SECONDS)
            yield base
        finally:
            stop_process(proc)


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=f"{served}/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_are_listed(client):
    assert [m.id for m in client.models.list()] == ["smollm2"]
    assert client.models.retrieve("smollm2").id == "smollm2"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_completion_carries_the_strategies_used(client, library_db):
    _, ids = library_db
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=DAMAGED, max_tokens=12, temperature=0
    )
    refs = raw.headers["x-strategist-strategies"].split(",")
    assert refs[0] == f"strategy:{ids['damaged']}@v1" and len(refs) <= 2
    assert raw.headers["x-strategist-include-pending"] == "false"
    completion = raw.parse()
    assert completion.choices[0].message.content.strip()
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert 0 < completion.usage.completion_tokens <= 12
    assert completion.model_extra["strategist"]["strategies"] == refs
    # The upstream really got the strategies: the same question without any costs fewer tokens.
    bare = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hello there!"}], max_tokens=4, temperature=0
    )
    assert bare.model_extra["strategist"]["strategies"] == []
    assert completion.usage.prompt_tokens > bare.usage.prompt_tokens + 30


def test_the_requests_system_message_is_kept_as_the_base(client, library_db):
    _, ids = library_db
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[{"role": "system", "content": "Answer in one word."}, *CONVERSATIONS["backorder"]],
        max_tokens=4,
        temperature=0,
    )
    assert raw.headers["x-strategist-strategies"].split(",")[0] == f"strategy:{ids['backorder']}@v1"
    assert raw.parse().choices[0].message.content is not None


async def test_streaming_with_the_async_client(served, library_db):
    _, ids = library_db
    client = openai.AsyncOpenAI(base_url=f"{served}/v1", api_key="unused", max_retries=0, timeout=120)
    async with client.chat.completions.with_streaming_response.create(
        model="smollm2", messages=DAMAGED, max_tokens=16, temperature=0, stream=True
    ) as response:
        assert response.headers["x-strategist-strategies"].split(",")[0] == f"strategy:{ids['damaged']}@v1"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = [c async for c in await response.parse()]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].model_extra["strategist"]["strategies"][0] == f"strategy:{ids['damaged']}@v1"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip()
    assert sum(1 for c in chunks if c.choices[0].delta.content) > 2, "the reply came in pieces"
    assert chunks[-1].choices[0].finish_reason == "stop"
    await client.close()


def test_streaming_with_the_sync_client(client):
    stream = client.chat.completions.create(model="smollm2", messages=DAMAGED, max_tokens=8, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream).strip()


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "smollm2"}, "messages", "missing_required_parameter"),
        ({"model": "smollm2", "messages": "hello"}, "messages", "invalid_value"),
        ({"model": "smollm2", "messages": []}, "messages", "invalid_value"),
        (
            {"model": "smollm2", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        (
            {"model": "smollm2", "messages": [{"role": "user", "content": 42}]},
            "messages[0].content",
            "invalid_value",
        ),
        ({"messages": DAMAGED}, "model", "missing_required_parameter"),
        ({"model": "smollm2", "messages": DAMAGED, "temperature": "hot"}, "temperature", "invalid_value"),
        ({"model": "smollm2", "messages": DAMAGED, "n": 2}, "n", "unsupported_value"),
        (
            # Tools are forwarded (tests/test_serve_tools.py); a tool without its function is not one.
            {"model": "smollm2", "messages": DAMAGED, "tools": [{"type": "function"}]},
            "tools[0].function",
            "missing_required_parameter",
        ),
        (
            {"model": "smollm2", "messages": DAMAGED, "functions": [{"name": "f"}]},
            "functions",
            "unsupported_parameter",
        ),
    ],
)
def test_bad_requests_get_openai_style_400s(served, body, param, code):
    r = httpx.post(f"{served}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and error["code"] == code
    assert error["message"]


def test_other_errors_have_the_same_shape(served, client):
    bad_json = httpx.post(
        f"{served}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    unknown = httpx.post(f"{served}/v1/chat/completions", json={"model": "gpt-4o", "messages": DAMAGED})
    assert unknown.status_code == 404
    assert (
        unknown.json()["error"]["code"] == "model_not_found" and unknown.json()["error"]["param"] == "model"
    )
    nowhere = httpx.get(f"{served}/v2/elsewhere")
    assert nowhere.status_code == 404 and nowhere.json()["error"]["type"] == "not_found_error"
    wrong_method = httpx.get(f"{served}/v1/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=[{"role": "robot", "content": "x"}])
    assert info.value.status_code == 400 and "messages[0].role" in str(info.value)


# -- a failing upstream, in-process ---------------------------------------------------------------------
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
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_upstream_failures_are_502_and_any_model_name_is_accepted(tmp_path):
    from strategist.runtime import StrategyLibrary
    from strategist.server import create_app

    ids = _make_library(tmp_path / "lib.db")
    calls: list[list[dict[str, str]]] = []

    def upstream(messages: list[dict[str, str]], sampling: Sampling) -> str:
        calls.append(messages)
        if "explode" in messages[-1]["content"]:
            raise ModelError("scripted/upstream", "connection refused")
        return "Please send a photo."

    library = StrategyLibrary.open(tmp_path / "lib.db", flush_every=10_000)
    app = create_app(library, FunctionModel(upstream, name="scripted/upstream"), "northwind")
    with ThreadedServer(app) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        # No --model-name: whatever model the bot asks for is served (only the base URL changed).
        done = client.chat.completions.create(model="gpt-4o-mini", messages=DAMAGED)
        assert done.choices[0].message.content == "Please send a photo."
        assert done.model == "scripted/upstream"
        assert calls[0][0]["role"] == "system" and "<strategies>" in calls[0][0]["content"]
        assert [m.id for m in client.models.list()] == ["scripted/upstream"]
        boom = [{"role": "user", "content": "the stove is broken, explode"}]
        for stream in (False, True):
            r = httpx.post(
                f"{base}/v1/chat/completions", json={"model": "x", "messages": boom, "stream": stream}
            )
            assert r.status_code == 502, r.text
            assert r.json()["error"]["type"] == "upstream_error"
            assert "connection refused" in r.json()["error"]["message"]
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="x", messages=boom)
    # Shutting down wrote the usage counters.
    check = StrategyLibrary.open(tmp_path / "lib.db")
    assert check.store.get_strategy(ids["damaged"]).times_retrieved >= 1
    check.close()


# -- embeddings from a real OpenAI-compatible /v1/embeddings, through litellm -----------------------------
@pytest.fixture(scope="module")
def embedding_server(tmp_path_factory):
    """llama.cpp's server in embedding mode (SmolLM2's hidden states; a stand-in for a real
    embedding model), as a base URL."""
    options = ("--embedding", "true", "--n_ctx", "1024")
    with llama_cpp_server(tmp_path_factory.mktemp("embedding_server"), *options) as base:
        yield f"{base}/v1"


async def test_litellm_embeddings_rerank(embedding_server, library_db):
    from strategist.runtime import LiteLLMEmbedder, StrategyLibrary

    path, _ = library_db
    embedder = LiteLLMEmbedder("openai/smollm2", api_base=embedding_server)
    vectors = await embedder.embed(["the stove arrived broken", "refund to my card"])
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 100
    library = StrategyLibrary.open(path, domain="northwind", k=3, embedder=embedder)
    plain = StrategyLibrary.open(path, domain="northwind", k=20, budget=None)
    convo = [
        {"role": "user", "content": "My boots came damaged and I want a refund to my card, or a new size"}
    ]
    found = await library.aretrieve(convo)
    assert found.ranker == "fts5+embeddings" and found.strategies
    assert set(found.refs) <= set(plain.retrieve(convo).refs)  # re-ranked, never added
    scores = [r.score for r in found.strategies]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert all(r.bm25 > 0 for r in found.strategies)
    library.close()
    plain.close()
