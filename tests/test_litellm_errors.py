"""The litellm adapter against a real HTTP server on loopback that misbehaves on purpose."""

from __future__ import annotations

import json

import pytest

from strategist.errors import ModelError, ModelUnavailableError
from strategist.models.base import Sampling

pytestmark = pytest.mark.server

OK_BODY = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hello there"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
}


@pytest.fixture
def server(fake_openai):
    """Answers with the next scripted (status, body) of ``server.script``, else OK_BODY."""
    return fake_openai(default=(200, OK_BODY))


def _model(server, **kw):
    from strategist.models.litellm_model import LiteLLMModel

    return LiteLLMModel("openai/test-model", api_base=server.url, timeout=10, **kw)


async def test_completion_and_request_shape(server):
    c = await _model(server).complete(
        [{"role": "user", "content": "hi"}], Sampling(temperature=0.2, max_tokens=12, seed=5)
    )
    assert c.text == "hello there" and (c.prompt_tokens, c.completion_tokens) == (7, 2)
    sent = server.requests[-1]
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["max_tokens"] == 12 and sent["temperature"] == 0.2 and sent["seed"] == 5


async def test_transient_errors_are_retried(server):
    err = {"error": {"message": "overloaded", "type": "server_error"}}
    server.script = [(500, err), (503, err)]
    c = await _model(server, retries=3).complete([{"role": "user", "content": "hi"}])
    assert c.text == "hello there"
    assert len(server.requests) >= 3


async def test_persistent_server_errors_become_a_model_error(server):
    err = {"error": {"message": "broken", "type": "server_error"}}
    server.script = [(500, err)] * 10
    with pytest.raises(ModelError, match="openai/test-model"):
        await _model(server, retries=1).complete([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("status", [400, 422])
async def test_a_rejected_request_is_a_model_error_with_the_servers_reason(server, status):
    # litellm's global drop_params turned such answers into None (and a crash further on).
    err = {"error": {"message": "unsupported field 'frobnicate'", "type": "invalid_request_error"}}
    server.script = [(status, err)] * 5
    with pytest.raises(ModelError, match=r"unsupported field .frobnicate.") as info:
        await _model(server, retries=3).complete([{"role": "user", "content": "hi"}])
    assert not isinstance(info.value, ModelUnavailableError)
    assert len(server.requests) == 1  # a rejected request is not retried


async def test_rejected_credentials_are_fatal_not_retried(server):
    server.script = [(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})] * 5
    with pytest.raises(ModelUnavailableError, match="openai/test-model"):
        await _model(server, retries=3).complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) <= 2  # the client may try once more itself; no backoff loop


async def test_json_mode_object_sends_the_schema(server):
    schema = json.dumps({"type": "object", "properties": {"a": {"type": "string"}}})
    await _model(server, json_mode="object").complete(
        [{"role": "user", "content": "json"}], Sampling(json_schema=schema)
    )
    assert server.requests[-1]["response_format"] == {"type": "json_object", "schema": json.loads(schema)}
