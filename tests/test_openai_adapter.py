"""The native OpenAI-compatible adapter against the fake OpenAI server on loopback: the request it
sends, every fault (429 with Retry-After, 500, malformed JSON, truncated body and stream, a hang),
keys, structured output, log-probabilities, tool calls, shared connections, and endpoint
failover."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import ROOT, free_port

from strategist.errors import REDACTED, ModelError, ModelUnavailableError
from strategist.models import resolve_model
from strategist.models.base import Sampling, ToolParams
from strategist.models.openai_compat import OpenAICompatModel

pytestmark = pytest.mark.server

HI = [{"role": "user", "content": "hi"}]
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
SCHEMA = json.dumps({"type": "object", "properties": {"a": {"type": "string"}}})


@pytest.fixture
def server(fake_openai):
    """Answers with the next scripted (status, body) of ``server.script``, else OK_BODY."""
    return fake_openai(default=(200, OK_BODY))


@pytest.fixture(autouse=True)
def no_openai_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _model(server, name="openai/test-model", **kw):
    kw.setdefault("timeout", 10)
    return resolve_model(name, api_base=server.url, **kw)


async def test_openai_names_resolve_to_the_native_adapter_and_the_request_is_plain(server):
    m = _model(server)
    assert isinstance(m, OpenAICompatModel)
    c = await m.complete(HI, Sampling(temperature=0.2, max_tokens=12, seed=5, stop=("END",)))
    assert c.text == "hello there" and (c.prompt_tokens, c.completion_tokens) == (7, 2)
    assert c.model == "openai/test-model" and c.finish_reason == "stop" and c.latency_ms > 0
    sent = server.requests[-1]
    assert sent == {
        "model": "test-model",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "max_tokens": 12,
        "seed": 5,
        "stop": ["END"],
    }
    assert server.auth[-1] == ("test-model", "")  # a self-hosted server without a key gets none
    await m.aclose()


async def test_litellm_stays_an_explicit_choice(server):
    from strategist.models.litellm_model import LiteLLMModel

    by_prefix = resolve_model("litellm/openai/test-model", api_base=server.url)
    by_setting = resolve_model("openai/test-model", api_base=server.url, client="litellm")
    assert isinstance(by_prefix, LiteLLMModel) and isinstance(by_setting, LiteLLMModel)
    assert by_prefix.name == "litellm/openai/test-model" and by_prefix.target == "openai/test-model"
    # The same model answers either way: one cache identity.
    assert by_prefix.cache_identity == _model(server).cache_identity == "openai/test-model"
    assert isinstance(resolve_model("anthropic/claude-sonnet-4-5"), LiteLLMModel)
    with pytest.raises(ModelUnavailableError, match="native adapter"):
        resolve_model("anthropic/x", api_base=["http://a/v1", "http://b/v1"])


@pytest.mark.parametrize(
    ("name", "base", "mode"),
    [
        ("vllm/Qwen/Qwen2.5-7B-Instruct", "http://127.0.0.1:8000/v1", "schema"),
        ("sglang/m", "http://127.0.0.1:30000/v1", "schema"),
        ("llamacpp/m", "http://127.0.0.1:8080/v1", "object"),
        ("ollama/llama3.2", "http://127.0.0.1:11434/v1", "schema"),
    ],
)
def test_known_servers_have_their_default_port_and_json_mode(name, base, mode):
    m = resolve_model(name)
    assert isinstance(m, OpenAICompatModel)
    assert m.bases == [base] and m.model_id == name.split("/", 1)[1]
    fmt = m._response_format(SCHEMA)
    assert fmt is not None and fmt["type"] == {"schema": "json_schema", "object": "json_object"}[mode]


async def test_transient_errors_are_retried_and_retry_after_is_honoured(fake_openai, monkeypatch):
    from strategist.models import openai_compat

    waits: list[int] = []
    monkeypatch.setattr(openai_compat, "backoff_seconds", lambda n: waits.append(n) or 0.01)
    server = fake_openai({0: "429", 1: "500", 2: "malformed", 3: "truncated"}, retry_after=0.5)
    m = _model(server, name="openai/student", retries=4)
    c = await m.complete(HI)
    assert c.text  # the scripted world's student answered in the end
    assert [o for _, _, o in server.log] == ["429", "500", "malformed", "truncated", "ok"]
    times = [t for t, _, _ in server.log]
    assert times[1] - times[0] >= 0.45  # the wait the 429 asked for, not the backoff
    assert waits == [2, 3, 4]  # the backoff of each later retry
    await m.aclose()


def test_backoff_doubles_from_one_second_to_thirty():
    from strategist.models.retry import backoff_seconds

    assert 1 <= backoff_seconds(1) <= 2 and 4 <= backoff_seconds(3) <= 5 and backoff_seconds(10) == 30


async def test_persistent_server_errors_become_a_model_error(server):
    server.script = [(500, {"error": {"message": "broken", "type": "server_error"}})] * 10
    with pytest.raises(ModelError, match=r"openai/test-model.*HTTP 500.*broken") as info:
        await _model(server, retries=1).complete(HI)
    assert not isinstance(info.value, ModelUnavailableError)
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [400, 422])
async def test_a_rejected_request_is_a_model_error_with_the_servers_reason(server, status):
    err = {"error": {"message": "unsupported field 'frobnicate'", "type": "invalid_request_error"}}
    server.script = [(status, err)] * 5
    with pytest.raises(ModelError, match=r"unsupported field .frobnicate.") as info:
        await _model(server, retries=3).complete(HI)
    assert not isinstance(info.value, ModelUnavailableError)
    assert len(server.requests) == 1  # a rejected request is not retried


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_rejected_keys_and_unknown_models_fail_fast(server, status):
    server.script = [(status, {"error": {"message": "no such thing", "type": "invalid_request_error"}})] * 5
    with pytest.raises(ModelUnavailableError, match="openai/test-model"):
        await _model(server, retries=3).complete(HI)
    assert len(server.requests) == 1


async def test_a_hang_is_a_timeout_and_then_a_model_error(fake_openai):
    server = fake_openai({0: "hang", 1: "hang"}, hang_seconds=3.0)
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"within 0\.5 s"):
        await _model(server, retries=0, timeout=0.5).complete(HI)
    assert time.monotonic() - start < 2.5


async def test_unreachable_server_is_a_model_error_quickly():
    m = resolve_model("openai/x", api_base=f"http://127.0.0.1:{free_port()}/v1", retries=0, timeout=5)
    start = time.monotonic()
    with pytest.raises(ModelError, match="cannot connect") as info:
        await m.complete(HI)
    assert "openai/x" in str(info.value) and time.monotonic() - start < 5


async def test_streaming_and_its_faults(fake_openai):
    server = fake_openai({1: "truncated-stream", 2: "500", 3: "429"}, retry_after=0.1)
    m = _model(server, name="openai/student", retries=2)
    first = [p async for p in m.stream(HI)]
    assert len(first) > 1 and all(isinstance(p, str) for p in first)
    with pytest.raises(ModelError, match=r"malformed event|ended before"):
        _ = [p async for p in m.stream(HI)]
    # Opening the stream is retried like a completion: 500, then 429, then the stream.
    again = [p async for p in m.stream(HI)]
    assert "".join(again) == "".join(first)
    await m.aclose()


async def test_a_streaming_request_answered_without_events_is_an_error(server):
    with pytest.raises(ModelError, match="SSE"):
        _ = [p async for p in _model(server).stream(HI)]


@pytest.mark.parametrize(
    ("json_mode", "expected"),
    [
        ("schema", {"type": "json_schema", "json_schema": {"name": "output", "schema": json.loads(SCHEMA)}}),
        ("object", {"type": "json_object", "schema": json.loads(SCHEMA)}),
        ("none", None),
        ("auto", None),  # an unknown model on an OpenAI-compatible server: the schema is in the prompt only
    ],
)
async def test_json_modes(server, json_mode, expected):
    await _model(server, json_mode=json_mode).complete(HI, Sampling(json_schema=SCHEMA))
    assert server.requests[-1].get("response_format") == expected


def test_auto_json_mode_of_openai_models_follows_litellms_table():
    if importlib.util.find_spec("litellm") is None:  # the table ships in the litellm package
        pytest.skip("litellm is not installed")
    assert resolve_model("openai/gpt-4o-mini")._response_format(SCHEMA)["type"] == "json_schema"
    assert resolve_model("openai/gpt-4")._response_format(SCHEMA) is None


async def test_log_probabilities_are_asked_for_and_read(server):
    body = json.loads(json.dumps(OK_BODY))
    body["choices"][0]["message"]["content"] = "4"
    body["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": "4",
                "logprob": -0.1,
                "top_logprobs": [{"token": "4", "logprob": -0.1}, {"token": "5", "logprob": -2.4}],
            }
        ]
    }
    server.script = [(200, body)]
    c = await _model(server).complete(HI, Sampling(max_tokens=1, top_logprobs=10))
    assert server.requests[-1]["logprobs"] is True and server.requests[-1]["top_logprobs"] == 10
    assert c.logprobs is not None and c.logprobs[0].top == {"4": -0.1, "5": -2.4}
    c = await _model(server).complete(HI, Sampling(max_tokens=1, top_logprobs=50))
    assert server.requests[-1]["top_logprobs"] == 20  # the most OpenAI (and vLLM by default) accept
    assert c.logprobs is None  # the server returned none: that is not "no alternatives"


async def test_tools_go_out_and_tool_calls_come_back(server):
    tool = {"type": "function", "function": {"name": "get_order", "parameters": {"type": "object"}}}
    body = json.loads(json.dumps(OK_BODY))
    body["choices"][0] = {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_order", "arguments": '{"id": 1}'},
                }
            ],
        },
        "finish_reason": "tool_calls",
    }
    server.script = [(200, body)]
    earlier = {"id": "c0", "type": "function", "function": {"name": "get_order", "arguments": "{}"}}
    convo = [
        *HI,
        {"role": "assistant", "content": "", "tool_calls": [earlier]},
        {"role": "tool", "tool_call_id": "c0", "content": "{}"},
    ]
    c = await _model(server).complete(convo, Sampling(), ToolParams((tool,), choice="auto", parallel=False))
    sent = server.requests[-1]
    assert sent["tools"] == [tool] and sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is False
    assert sent["messages"][1]["tool_calls"][0]["id"] == "c0" and sent["messages"][2]["tool_call_id"] == "c0"
    assert c.text == "" and c.finish_reason == "tool_calls"
    assert c.tool_calls and (c.tool_calls[0].id, c.tool_calls[0].name, c.tool_calls[0].arguments) == (
        "call_1",
        "get_order",
        '{"id": 1}',
    )


async def test_keys_are_sent_and_never_shown(fake_openai, monkeypatch):
    secret = "sk-test-FAKE-native-0f9e8d7c6b5a"
    monkeypatch.setenv("STRATEGIST_JUDGE_AUTH", secret)
    server = fake_openai(lambda n: "echo-key", error_status=400)
    m = _model(server, api_key_env="STRATEGIST_JUDGE_AUTH", retries=0)
    with pytest.raises(ModelError) as info:
        await m.complete(HI)
    assert server.auth[-1][1] == f"Bearer {secret}"
    assert secret not in str(info.value) and REDACTED in str(info.value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-FAKE-openai-1234567890")
    await _model(fake_openai(default=(200, OK_BODY))).complete(HI)  # openai/ names read OPENAI_API_KEY
    monkeypatch.delenv("STRATEGIST_JUDGE_AUTH")
    with pytest.raises(ModelUnavailableError, match="STRATEGIST_JUDGE_AUTH is not set"):
        await _model(server, api_key_env="STRATEGIST_JUDGE_AUTH").complete(HI)


async def test_openais_own_api_needs_a_key():
    with pytest.raises(ModelUnavailableError, match="OPENAI_API_KEY"):
        await resolve_model("openai/gpt-4o-mini").complete(HI)


def test_prices_come_from_litellms_table_without_importing_litellm():
    if importlib.util.find_spec("litellm") is None:
        pytest.skip("litellm is not installed")
    code = textwrap.dedent("""
        import json, sys
        from strategist.models import resolve_model
        m = resolve_model("openai/gpt-4o-mini")
        print(json.dumps({"price": m.price(1000, 1000), "vllm": resolve_model("vllm/x").price(1000, 1000),
                          "litellm": "litellm" in sys.modules}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    got = json.loads(out.stdout)
    assert got["price"] is not None and got["price"] > 0 and got["vllm"] is None
    assert got["litellm"] is False


async def test_models_on_one_base_url_share_one_session(server):
    a, b = _model(server), _model(server, name="openai/other")
    await a.complete(HI)
    await b.complete(HI)
    assert a._endpoints[0].session is b._endpoints[0].session
    session = a._endpoints[0].session
    await a.aclose()
    assert not session.closed  # b still uses it
    await b.complete(HI)
    await b.aclose()
    assert session.closed


# -- several endpoints of one model ------------------------------------------------------------------
async def test_one_endpoint_down_does_not_fail_calls(fake_openai):
    up = fake_openai(default=(200, OK_BODY))
    dead = f"http://127.0.0.1:{free_port()}/v1"
    m = resolve_model("openai/test-model", api_base=[dead, up.url], retries=0, timeout=5)
    results = await asyncio.gather(*(m.complete(HI) for _ in range(20)))
    assert all(c.text == "hello there" for c in results)
    assert len(up.requests) == 20
    dead_ep = next(ep for ep in m._endpoints if ep.base == dead)
    assert dead_ep.failures >= 1 and dead_ep.down_until > time.monotonic()
    # Later calls do not try the endpoint that is down first.
    before = dead_ep.failures
    for _ in range(5):
        await m.complete(HI)
    assert dead_ep.failures == before
    await m.aclose()


async def test_failing_endpoint_is_left_alone_and_calls_spread_over_the_healthy_ones(fake_openai):
    broken = fake_openai(default=(500, {"error": {"message": "boom", "type": "server_error"}}))
    a, b = fake_openai(default=(200, OK_BODY)), fake_openai(default=(200, OK_BODY))
    m = resolve_model("openai/test-model", api_base=f"{broken.url},{a.url},{b.url}", retries=0, timeout=5)
    for _ in range(3):  # the broken endpoint fails one of these, which fail over at once
        assert (await m.complete(HI)).text == "hello there"
    assert len(broken.requests) == 1
    results = await asyncio.gather(*(m.complete(HI) for _ in range(30)))
    assert len(results) == 30
    assert len(broken.requests) == 1  # left alone while it is down
    assert len(a.requests) >= 5 and len(b.requests) >= 5  # least in flight: both take a share
    await m.aclose()


async def test_every_endpoint_down_is_a_model_error(fake_openai):
    bases = [f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1"]
    with pytest.raises(ModelError, match="cannot connect"):
        await resolve_model("vllm/m", api_base=bases, retries=0, timeout=2).complete(HI)


def test_config_takes_several_endpoints():
    from strategist.config import RoleConfig

    cfg = RoleConfig(model="vllm/m", api_base=["http://gpu1:8000/v1", "http://gpu2:8000/v1"])
    m = resolve_model(cfg.model, **cfg.options())
    assert m.bases == ["http://gpu1:8000/v1", "http://gpu2:8000/v1"]
    assert resolve_model("vllm/m", api_base="http://a:1/v1, http://b:2/v1/").bases == [
        "http://a:1/v1",
        "http://b:2/v1",
    ]
    with pytest.raises(ValueError, match="not an http"):
        RoleConfig(model="vllm/m", api_base=["gpu1:8000"])


def test_a_grow_with_only_openai_compatible_roles_never_imports_litellm(tmp_path):
    """The whole CLI grow, every role an ``openai/`` model on the fake server, in a new process."""
    code = textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        os.chdir({str(tmp_path)!r})
        from conftest import FakeOpenAI
        from typer.testing import CliRunner
        from strategist.cli import app
        server = FakeOpenAI()
        roles = "".join(
            f'[roles.{{r}}]\\nmodel = "openai/{{r}}"\\napi_base = "{{server.url}}"\\njson_mode = "object"\\n'
            for r in ("teacher", "student", "customer", "judge")
        )
        open("strategist.toml", "w").write('db = "lib.db"\\n' + roles)
        runner = CliRunner()
        assert runner.invoke(app, ["init"]).exit_code == 0
        result = runner.invoke(app, ["grow", "--scenarios", "2", "--generate", "1", "--samples", "2",
                                     "--variants", "0", "--regression", "0", "--max-turns", "2", "--json"])
        summary = json.loads(result.stdout)
        print(json.dumps({{"status": summary["status"], "calls": summary["llm_calls"],
                          "requests": len(server.requests), "litellm": "litellm" in sys.modules}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATEGIST_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["status"] == "completed" and got["calls"] > 10 and got["requests"] >= got["calls"]
    assert got["litellm"] is False
