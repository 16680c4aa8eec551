"""``strategist serve`` for a bot that uses tools: the official ``openai`` client sends tools and
gets tool calls back (streaming and not), then sends the tool's result and gets the answer. The
upstream is a real process on 127.0.0.1 (tests/fixtures/tool_upstream.py) that records what it
was sent, so the test sees that tools, tool_choice and tool messages went on untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import NORTHWIND, free_port, stop_process, wait_for_http
from runtime_library import add_strategies

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.server

UPSTREAM = Path(__file__).resolve().parent / "fixtures" / "tool_upstream.py"
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
    },
    {
        "type": "function",
        "function": {"name": "cancel_order", "parameters": {"type": "object", "properties": {}}},
    },
]
QUESTION = {"role": "user", "content": "My boots arrived damaged, order NW-1. Can I get a refund to my card?"}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("upstream") / "upstream.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(UPSTREAM), str(port)], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/v1/models", proc, log, 20)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(proc)


@pytest.fixture(scope="module")
def served(upstream, tmp_path_factory):
    from strategist.packs import load_domain
    from strategist.store import Store

    work = tmp_path_factory.mktemp("serve_tools")
    store = Store.open(work / "lib.db")
    add_strategies(store, load_domain(NORTHWIND / "domain.yaml"))
    store.close()
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "strategist"), "serve", "--db", str(work / "lib.db")]
    cmd += [
        "--upstream",
        "openai/up",
        "--api-base",
        f"{upstream}/v1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATEGIST_")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    log = work / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health", proc, log, 60)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(proc)


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=f"{served}/v1", api_key="unused", max_retries=0, timeout=60)


def received(upstream) -> list[dict]:
    return httpx.get(f"{upstream}/requests").json()


def test_tools_in_tool_calls_out_then_the_answer(client, upstream):
    raw = client.chat.completions.with_raw_response.create(
        model="up", messages=[QUESTION], tools=TOOLS, tool_choice="auto", parallel_tool_calls=False
    )
    first = raw.parse()
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_order" and json.loads(call.function.arguments) == {"order_id": "X1"}
    assert raw.headers["x-strategist-strategies"]  # the strategies that fit went into the prompt
    sent = received(upstream)[-1]
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is False
    assert "<strategies>" in sent["messages"][0]["content"]

    # The bot runs the tool itself and sends the result back, as any tool-using client does.
    follow_up = [
        QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"status": "delivered"}'},
    ]
    second = client.chat.completions.create(model="up", messages=follow_up, tools=TOOLS)
    assert second.choices[0].message.content == 'The tool said: {"status": "delivered"}'
    sent = received(upstream)[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]  # intact and in order
    assert sent[2]["tool_calls"][0]["id"] == call.id and sent[3]["tool_call_id"] == call.id


def test_tool_calls_stream_as_delta_pieces(client, upstream):
    stream = client.chat.completions.create(model="up", messages=[QUESTION], tools=TOOLS, stream=True)
    pieces, finish = [], None
    for chunk in stream:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            pieces.append(tc)
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and len(pieces) >= 2  # the arguments came in more than one piece
    assert pieces[0].id == "call_up_1" and pieces[0].function.name == "get_order"
    assert json.loads("".join(p.function.arguments or "" for p in pieces)) == {"order_id": "X1"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools"),
        ({"messages": [QUESTION, {"role": "tool", "content": "x"}]}, "messages"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tool_choice": "sometimes", "tools": TOOLS}, "tool_choice"),
        ({"parallel_tool_calls": "yes", "tools": TOOLS}, "parallel_tool_calls"),
    ],
)
def test_malformed_tool_requests_are_400(served, body, param):
    request = {"model": "up", "messages": [QUESTION], **body}
    r = httpx.post(f"{served}/v1/chat/completions", json=request, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"].startswith(param) or param in error["message"]
