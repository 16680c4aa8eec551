"""LiteLLMModel against a REAL OpenAI-compatible server: llama-cpp-python's own server running
SmolLM2 on loopback. litellm is imported lazily (inside the adapter), never at module import."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import free_port

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

pytest.importorskip("llama_cpp")
pytest.importorskip("llama_cpp.server")

from strategist.core.dialogue import Turn
from strategist.errors import ModelError
from strategist.models.base import Sampling, TokenLogprobs
from strategist.models.embedded import EmbeddedModel
from strategist.models.litellm_model import LiteLLMModel
from strategist.packs import load_domain, load_scenario_set
from strategist.roles import Student

pytestmark = pytest.mark.server

NORTHWIND = Path(__file__).resolve().parent.parent / "scenarios" / "northwind"
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


@pytest.fixture(scope="module")
def server(llama_server):
    """Base URL (without /v1) of a llama.cpp OpenAI-compatible server serving SmolLM2 as 'smollm2'."""
    return llama_server


@pytest.fixture
def model(server):
    return LiteLLMModel("openai/smollm2", api_base=f"{server}/v1", json_mode="object", timeout=60, retries=1)


async def test_completion_returns_text_and_usage(model):
    c = await model.complete(HELLO, Sampling(temperature=0.0, max_tokens=16))
    assert c.text.strip()
    assert c.model == "openai/smollm2"
    assert c.prompt_tokens > 0
    assert 0 < c.completion_tokens <= 16
    assert c.logprobs is None  # not asked for
    assert c.latency_ms > 0


async def test_json_object_mode_with_schema(model):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    c = await model.complete(
        [{"role": "user", "content": "Describe a person as JSON with a name and an age."}],
        Sampling(temperature=0.0, max_tokens=40, json_schema=json.dumps(schema)),
    )
    data = json.loads(c.text)
    assert {"name", "age"} <= data.keys()
    assert isinstance(data["age"], int)


async def test_top_logprobs(model):
    # llama.cpp's server answers OpenAI-style: choices[0].logprobs.content[i] = {token, logprob,
    # bytes, top_logprobs: [{token, logprob, bytes}, ...]}.
    c = await model.complete(HELLO, Sampling(temperature=0.0, max_tokens=8, top_logprobs=5))
    assert c.logprobs is not None, "llama.cpp's server returns logprobs; the adapter lost them"
    assert len(c.logprobs) == c.completion_tokens
    assert "".join(t.token for t in c.logprobs) == c.text
    for tok in c.logprobs:
        assert isinstance(tok, TokenLogprobs)
        assert tok.logprob <= 0.0
        # Keyed by token text: two tokens with the same text would share one entry.
        assert 1 <= len(tok.top) <= 5
        assert sum(math.exp(v) for v in tok.top.values()) <= 1.0 + 1e-6
        assert tok.logprob == pytest.approx(max(tok.top.values()))


async def test_server_and_embedded_logprobs_agree(model):
    """Same GGUF: the embedded adapter's log-probabilities of the first token match the server's.

    Only the first token is compared: later greedy steps can flip between near-tied tokens when the
    two processes batch (or cache) the prompt differently.
    """
    msgs = [{"role": "user", "content": "Name one colour of the rainbow."}]
    s = Sampling(temperature=0.0, max_tokens=1, top_logprobs=5)
    remote = await model.complete(msgs, s)
    local_model = EmbeddedModel()
    try:
        local = await local_model.complete(msgs, s)
    finally:
        await local_model.aclose()
    assert remote.logprobs and local.logprobs
    r, loc = remote.logprobs[0], local.logprobs[0]
    assert r.token == loc.token
    assert r.logprob == pytest.approx(loc.logprob, abs=0.02)
    shared = r.top.keys() & loc.top.keys()
    assert len(shared) >= 3
    for tok in shared:
        assert r.top[tok] == pytest.approx(loc.top[tok], abs=0.02)


async def test_unreachable_server_raises_model_error_quickly():
    dead = LiteLLMModel("openai/smollm2", api_base=f"http://127.0.0.1:{free_port()}/v1", retries=0, timeout=5)
    start = time.monotonic()
    with pytest.raises(ModelError) as info:
        await dead.complete(HELLO, Sampling(max_tokens=4))
    assert time.monotonic() - start < 15
    assert "openai/smollm2" in str(info.value)


async def test_student_replies_through_server(model):
    domain = load_domain(NORTHWIND / "domain.yaml")
    _, scenarios = load_scenario_set(NORTHWIND / "scenarios.yaml", domain)
    scenario = scenarios[0]
    student = Student(model, domain, sampling=Sampling(temperature=0.7, max_tokens=24))
    c = await student.reply([Turn(role="customer", content=scenario.opening)], seed=3)
    assert c.text.strip()
    assert c.model == "openai/smollm2"
    assert c.prompt_tokens > 100  # the system prompt carries the domain's policy
    assert 0 < c.completion_tokens <= 24


def test_cli_grow_with_student_on_server(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from strategist.cli import app

    monkeypatch.chdir(tmp_path)  # no strategist.toml is picked up
    for var in ("STRATEGIST_CONFIG", "STRATEGIST_DB", "STRATEGIST_EMBEDDED_MODEL_PATH"):
        monkeypatch.delenv(var, raising=False)
    for role in ("TEACHER", "CUSTOMER", "JUDGE"):
        monkeypatch.delenv(f"STRATEGIST_{role}_MODEL", raising=False)
        monkeypatch.delenv(f"STRATEGIST_{role}_API_BASE", raising=False)
    monkeypatch.setenv("STRATEGIST_STUDENT_MODEL", "openai/smollm2")
    monkeypatch.setenv("STRATEGIST_STUDENT_API_BASE", f"{server}/v1")
    db = tmp_path / "x.db"
    args = [
        "grow",
        "--db",
        str(db),
        "--rounds",
        "1",
        "--scenarios",
        "1",
        "--generate",
        "0",
        "--samples",
        "1",
        "--variants",
        "0",
        "--regression",
        "0",
        "--max-turns",
        "1",
        "--json",
    ]

    result = CliRunner().invoke(app, args, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    out = result.stdout
    summary, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    assert summary["status"] == "completed"
    assert summary["dialogues"] >= 1
    assert summary["llm_calls"] >= 2
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT role, model, ok FROM llm_calls").fetchall()
    student_rows = [r for r in rows if r[0] == "student"]
    assert student_rows, rows
    assert all(model == "openai/smollm2" for _, model, _ in student_rows)
    assert all(ok for _, _, ok in student_rows)
    assert all(model == "embedded/smollm2" for role, model, _ in rows if role != "student")
    assert any(role == "judge" for role, _, _ in rows)
