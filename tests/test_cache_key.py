"""The response cache's key is computed piece by piece on the hot path: it must stay the exact
text json.dumps writes, or the responses stored by earlier versions would never replay."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from hypothesis import given
from hypothesis import strategies as st

from strategist.engine.cache import completion_to_dict, request_key
from strategist.models.base import Completion, Sampling, TokenLogprobs, ToolCallRequest, ToolParams

TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": TEXT}),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "content": TEXT, "tool_call_id": TEXT, "name": TEXT},
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": TEXT,
            "tool_calls": st.lists(
                st.fixed_dictionaries(
                    {
                        "id": TEXT,
                        "type": st.just("function"),
                        "function": st.fixed_dictionaries({"name": TEXT}),
                    }
                ),
                max_size=2,
            ),
        }
    ),
)


def reference_key(model, messages, sampling, tools=None):
    payload = {"model": model, "messages": list(messages), "sampling": asdict(sampling)}
    if tools is not None:
        payload["tools"] = tools.request_fields()
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@given(
    model=TEXT,
    messages=st.lists(MESSAGE, max_size=6),
    temperature=st.floats(0, 2),
    seed=st.one_of(st.none(), st.integers(-(2**40), 2**40)),
    stop=st.lists(TEXT, max_size=2).map(tuple),
    with_tools=st.booleans(),
)
def test_request_key_is_the_canonical_jsons_sha256(model, messages, temperature, seed, stop, with_tools):
    schema = '{"type":"object"}'
    s = Sampling(temperature=temperature, max_tokens=64, seed=seed, json_schema=schema, stop=stop)
    tools = ToolParams(({"type": "function", "function": {"name": "f", "parameters": {}}},), choice="auto")
    tools = tools if with_tools else None
    assert request_key(model, messages, s, tools) == reference_key(model, messages, s, tools)


def test_completion_to_dict_is_asdict_without_cache_hit():
    c = Completion(
        text="hi ✓",
        model="openai/x",
        prompt_tokens=3,
        completion_tokens=1,
        logprobs=[TokenLogprobs("hi", -0.1, {"hi": -0.1, "yo": -2.0})],
        latency_ms=12.5,
        cache_hit=True,
        cost_usd=0.001,
        tool_calls=[ToolCallRequest("c1", "get_order", "{}")],
        finish_reason="tool_calls",
    )
    expected = asdict(c)
    del expected["cache_hit"]
    assert completion_to_dict(c) == expected
    bare = Completion(text="", model="m")
    assert completion_to_dict(bare) == {k: v for k, v in asdict(bare).items() if k != "cache_hit"}
