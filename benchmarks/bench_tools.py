"""Tool steps: what strategist adds per tool call over a bare ``mcp`` SDK client.

Run:  .venv/bin/python benchmarks/bench_tools.py [--repeats 5] [--dialogues 20] [--json]

The project's own MCP fixture (tests/fixtures/mcp_orders_server.py, stdio) serves both sides.
Bare: one ``mcp.ClientSession`` calls ``get_order`` as many times as the dialogues below make
calls. strategist: dialogues of a zero-latency scripted student that makes two tool calls in
each of its turns (through ``simulate``: the student loop, argument validation, the timeout,
state isolation by argument injection, the turns recorded), minus the same dialogues with the
tools' answers given by a scripted toolset (so only the MCP calls remain). Per-call time =
difference / tool calls. Both sides run alternately in one process, so the machine's noise hits
both; the ratio strategist / bare is the figure (target <= 1.2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import StatsTable, late_refund, machine, northwind, spread
from strategist.core.tools import McpServerConfig, ToolsConfig, ToolSpec
from strategist.engine.simulate import simulate
from strategist.models import FunctionModel, tool_call
from strategist.roles import Customer, Student
from strategist.tools import ScriptedToolset, environment_from_config

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mcp_orders_server.py"
TURNS = 3


def student(messages: list[dict[str, Any]], s: Any, tools: Any) -> Any:
    # Two tool calls per turn (each in its own step), then the reply.
    steps = 0
    for m in reversed(messages):
        if m["role"] == "user":
            break
        steps += m["role"] == "tool"
    if tools is not None and steps < 2:
        return tool_call("get_order", {"order_id": "A100"})
    return "Your order A100 is pending."


def customer(messages: list[dict[str, Any]], s: Any) -> str:
    return "And then?"


async def dialogues(n: int, toolset_for: Any, specs: list[ToolSpec]) -> tuple[float, int]:
    domain = northwind()
    scenario = late_refund(domain, max_turns=TURNS)
    calls = 0
    start = time.perf_counter()
    for i in range(n):
        async with toolset_for(f"bench-{i}") as toolset:
            d = await simulate(
                scenario,
                domain,
                Student(FunctionModel(student, name="s"), domain),
                Customer(FunctionModel(customer, name="c"), domain),
                seed=i,
                tools=toolset,
                tool_specs=specs,
            )
        calls += len(d.tool_calls)
    return time.perf_counter() - start, calls


async def bare_calls(n: int) -> float:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=[str(FIXTURE)])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("get_order", {"order_id": "A100"})  # warm
        start = time.perf_counter()
        for _ in range(n):
            await session.call_tool("get_order", {"order_id": "A100", "session": "bench"})
        return time.perf_counter() - start


async def run(repeats: int, n: int) -> dict[str, Any]:
    config = ToolsConfig(
        mcp=McpServerConfig(
            command=[sys.executable, str(FIXTURE)], isolation="argument", state_argument="session"
        )
    )
    env = environment_from_config(config, source="benchmark")
    async with env:
        specs = await env.list_tools()
        scripted_specs = [s for s in specs if s.name == "get_order"]

        def scripted(_key: str) -> Any:
            return ScriptedToolset(
                scripted_specs, {"get_order": '{"ok": true, "order": {"status": "pending"}}'}
            )

        await dialogues(2, env.session, specs)  # warm-up
        rows = []
        for _ in range(repeats):
            with_mcp, calls = await dialogues(n, env.session, specs)
            without, _ = await dialogues(n, scripted, scripted_specs)
            bare = await bare_calls(calls)
            rows.append(
                {
                    "strategist_ms": (with_mcp - without) / calls * 1000,
                    "bare_ms": bare / calls * 1000,
                    "calls": calls,
                }
            )
    ratios = [r["strategist_ms"] / r["bare_ms"] for r in rows]
    return {
        "repeats": repeats,
        "dialogues": n,
        "tool_calls_per_run": rows[0]["calls"],
        "strategist_ms_per_call": spread([r["strategist_ms"] for r in rows]),
        "bare_ms_per_call": spread([r["bare_ms"] for r in rows]),
        "ratio": spread(ratios),
        "ratio_median": statistics.median(ratios),
        "target_ratio": 1.2,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dialogues", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = asyncio.run(run(args.repeats, args.dialogues))
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(machine())
    t = StatsTable()
    t.add_stats("tool call, strategist / bare mcp client", out["ratio"], "<= 1.2")
    print(t.render())
    s, b = out["strategist_ms_per_call"]["median"], out["bare_ms_per_call"]["median"]
    print(f"{out['tool_calls_per_run']} tool calls per run; strategist {s:.3f} ms/call, bare {b:.3f} ms/call")


if __name__ == "__main__":
    main()
