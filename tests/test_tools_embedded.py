"""The embedded model with tools, for real: its chat template knows no tools, so they are prompted
and its answer constrained to a reply or a call of an offered tool (strategist/models/prompted_tools.py).
It calls tools clumsily; what matters is that every answer becomes a reply or a tool call that is
executed and recorded, never a crash."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from strategist.core.domain import Scenario
from strategist.core.tools import McpServerConfig, ToolsConfig
from strategist.engine.simulate import simulate
from strategist.models import ToolParams
from strategist.roles import Customer, Student
from strategist.tools import environment_from_config

pytestmark = pytest.mark.embedded
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mcp_orders_server.py"
GET_ORDER = {
    "type": "function",
    "function": {
        "name": "get_order",
        "description": "Look an order up by its id.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}


@pytest.fixture(scope="module")
def embedded():
    pytest.importorskip("llama_cpp")
    from strategist.errors import ModelUnavailableError
    from strategist.models.embedded import EmbeddedModel

    try:
        return EmbeddedModel()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))


async def test_the_embedded_model_answers_with_a_tool_call_or_a_reply(embedded):
    from strategist.models import Sampling

    messages = [
        {"role": "system", "content": "You are a support agent. Look orders up before you answer."},
        {"role": "user", "content": "Where is my order A100?"},
    ]
    c = await embedded.complete(
        messages, Sampling(temperature=0.0, max_tokens=80, seed=1), ToolParams((GET_ORDER,))
    )
    assert c.tool_calls or c.text  # one or the other, parsed from the constrained answer
    if c.tool_calls:
        call = c.tool_calls[0]
        assert call.name == "get_order" and isinstance(json.loads(call.arguments), dict)
    # Forced to call (tool_choice naming the tool), it calls that tool.
    forced = ToolParams((GET_ORDER,), choice={"type": "function", "function": {"name": "get_order"}})
    c = await embedded.complete(messages, Sampling(temperature=0.0, max_tokens=80, seed=1), forced)
    assert c.tool_calls and c.tool_calls[0].name == "get_order"
    # Told not to call, it replies in words.
    c = await embedded.complete(
        messages, Sampling(temperature=0.0, max_tokens=40, seed=1), ToolParams((GET_ORDER,), choice="none")
    )
    assert not c.tool_calls and c.text.strip()


async def test_an_embedded_student_with_real_mcp_tools_runs_and_records_every_call(embedded, northwind):
    config = ToolsConfig(
        mcp=McpServerConfig(
            command=[sys.executable, str(FIXTURE)],
            isolation="argument",
            state_argument="session",
            hidden=["slow_lookup"],
        ),
        max_steps=2,
    )
    scenario = Scenario(
        id=1,
        domain="northwind",
        title="Cancel a pending order",
        intent="order_status",
        goal="Cancel order A100, which has not shipped.",
        opening="Hi, please cancel my order A100, I ordered the wrong size.",
        max_turns=2,
    )
    student = Student(embedded, northwind)
    from strategist.models import ScriptedModel

    customer = Customer(ScriptedModel(default="Thanks. ###STOP###"), northwind)
    env = environment_from_config(config, source="test")
    async with env:
        specs = await env.list_tools()
        async with env.session("embedded-1") as toolset:
            d = await simulate(
                scenario,
                northwind,
                student,
                customer,
                seed=3,
                tools=toolset,
                tool_specs=specs,
                max_tool_steps=2,
            )
    assert d.error is None, d.error
    steps = [t for t in d.turns if t.tool_calls]
    results = [t for t in d.turns if t.role == "tool"]
    assert len(results) == sum(len(t.tool_calls) for t in steps)  # every call executed and recorded
    assert all(r.latency_ms is not None for r in results)
    assert d.student_turns  # and the customer got a reply
