"""The native OpenAI-compatible adapter against a REAL server: llama-cpp-python's OpenAI-compatible
server running SmolLM2 on loopback, named as ``llamacpp/smollm2`` (completion, streaming, JSON
schema, log-probabilities)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("llama_cpp.server")

from strategist.models import resolve_model
from strategist.models.base import Sampling
from strategist.models.openai_compat import OpenAICompatModel

pytestmark = pytest.mark.server

HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@pytest.fixture
async def model(llama_server):
    m = resolve_model("llamacpp/smollm2", api_base=f"{llama_server}/v1", timeout=60, retries=1)
    assert isinstance(m, OpenAICompatModel)
    yield m
    await m.aclose()


async def test_completion_returns_text_and_usage(model):
    c = await model.complete(HELLO, Sampling(temperature=0.0, max_tokens=16, seed=1))
    assert c.text.strip() and c.model == "llamacpp/smollm2"
    assert c.prompt_tokens > 0 and 0 < c.completion_tokens <= 16
    assert c.logprobs is None and c.cost_usd is None and c.finish_reason in ("stop", "length")


async def test_streaming_gives_the_same_text_as_a_completion(model):
    s = Sampling(temperature=0.0, max_tokens=16, seed=1)
    pieces = [p async for p in model.stream(HELLO, s)]
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == (await model.complete(HELLO, s)).text


@pytest.mark.parametrize("json_mode", ["auto", "object"])
async def test_json_schema_constrains_the_answer(llama_server, json_mode):
    # llama.cpp takes the schema in a json_object response_format: what "auto" sends it.
    m = resolve_model("llamacpp/smollm2", api_base=f"{llama_server}/v1", json_mode=json_mode, timeout=60)
    try:
        c = await m.complete(
            [{"role": "user", "content": "Describe a person as JSON with a name and an age."}],
            Sampling(temperature=0.0, max_tokens=40, json_schema=json.dumps(PERSON)),
        )
    finally:
        await m.aclose()
    data = json.loads(c.text)
    assert {"name", "age"} <= data.keys() and isinstance(data["age"], int)


async def test_top_logprobs(model):
    c = await model.complete(HELLO, Sampling(temperature=0.0, max_tokens=8, top_logprobs=5))
    assert c.logprobs is not None, "llama.cpp's server returns logprobs; the adapter lost them"
    assert len(c.logprobs) == c.completion_tokens
    assert "".join(t.token for t in c.logprobs) == c.text
    for tok in c.logprobs:
        assert tok.logprob <= 0.0 and 1 <= len(tok.top) <= 5
        assert sum(math.exp(v) for v in tok.top.values()) <= 1.0 + 1e-6
        assert tok.logprob == pytest.approx(max(tok.top.values()))
