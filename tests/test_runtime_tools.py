"""The Python API for a bot that owns its tools: StrategicBot passes tools to the model and hands
back the tool calls; the conversation's tool-call and tool messages reach the model intact and in
order; library.augment() keeps them; retrieval ranks on words, not on tool results."""

from __future__ import annotations

import json

import pytest
from runtime_library import CONVERSATIONS, add_strategies

from strategist.errors import InputError
from strategist.models import FunctionModel, ScriptedModel, tool_call
from strategist.runtime import StrategicBot, StrategyLibrary

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look an order up.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]
CALL = {
    "id": "call_9",
    "type": "function",
    "function": {"name": "get_order", "arguments": '{"order_id": "NW-1"}'},
}


@pytest.fixture
def library(store, northwind):
    add_strategies(store, northwind)
    lib = StrategyLibrary(store, domain="northwind")
    yield lib
    lib.close()


def test_the_bot_offers_its_tools_and_returns_the_calls_for_the_caller_to_run(library):
    student = ScriptedModel([tool_call("get_order", {"order_id": "NW-1"}, id="call_9"), "It was delivered."])
    bot = StrategicBot(student, library, "northwind", tools=TOOLS)
    first = bot.reply(CONVERSATIONS["damaged"])
    assert [c.name for c in first.tool_calls] == ["get_order"] and first.strategies
    assert student.calls[0].tools.tools == tuple(TOOLS)  # passed through as given
    message = first.as_message()
    assert message["tool_calls"][0]["id"] == "call_9" and message["content"] is None
    # The caller runs the tool and asks again with the result.
    history = [
        *CONVERSATIONS["damaged"],
        message,
        {"role": "tool", "tool_call_id": "call_9", "content": '{"status": "delivered"}'},
    ]
    second = bot.reply(history)
    assert second.text == "It was delivered." and not second.tool_calls
    sent = student.calls[1].messages
    assert [m["role"] for m in sent[-2:]] == ["assistant", "tool"]
    assert sent[-2]["tool_calls"][0]["function"]["arguments"] == '{"order_id": "NW-1"}'
    assert sent[-1]["tool_call_id"] == "call_9"
    assert second.as_dict()["tool_calls"] == []
    bot.close()


def test_tools_per_call_override_and_malformed_tools_are_refused(library):
    student = FunctionModel(lambda m, s, t: "calls? " + ("yes" if t else "no"))
    bot = StrategicBot(student, library, "northwind")
    assert bot.reply(CONVERSATIONS["damaged"]).text == "calls? no"
    assert bot.reply(CONVERSATIONS["damaged"], tools=TOOLS).text == "calls? yes"
    with pytest.raises(InputError, match=r"tools: \[0\]: not an OpenAI tool"):
        StrategicBot(
            student, library, "northwind", tools=[{"type": "function", "function": {"description": "x"}}]
        )
    bot.close()


async def test_a_streamed_reply_joins_the_pieces_of_its_tool_calls(library):
    student = ScriptedModel([tool_call("get_order", {"order_id": "NW-1"}, id="call_9")])
    bot = StrategicBot(student, library, "northwind", tools=TOOLS)
    stream = await bot.astream(CONVERSATIONS["damaged"])
    pieces = [p async for p in stream]
    assert pieces and stream.reply.tool_calls[0].name == "get_order"
    assert json.loads(stream.reply.tool_calls[0].arguments) == {"order_id": "NW-1"}
    await bot.aclose()


def test_augment_keeps_tool_messages_and_retrieval_ignores_tool_results(library):
    convo = [
        {"role": "user", "content": "My stove arrived damaged."},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {
            "role": "tool",
            "tool_call_id": "call_9",
            "content": json.dumps({"note": "backorder backorder backorder"}),
        },
    ]
    out = library.augment(convo, domain="northwind")
    assert out[0]["role"] == "system" and out[1:] == convo  # untouched, in order
    plain = library.retrieve(convo[:1], domain="northwind")
    with_tool = library.retrieve(convo, domain="northwind")
    # A tool result full of another topic's words does not change what is retrieved.
    assert with_tool.refs == plain.refs
