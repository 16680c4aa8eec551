"""Orchestration overhead: what strategist itself costs per model call.

Run:  .venv/bin/python benchmarks/bench_orchestration.py [--repeats 5] [--json]

A whole grow run (scenario generation, dialogues, judging, coaching, the gate with its variants
and regression checks, every row written to a SQLite file, the response cache and the call
ledger on) is driven by zero-latency scripted models; every call they receive is recorded. The
same calls (same messages, same sampling) are then made directly to the same scripted models.
Overhead per call = (grow wall time - direct wall time) / number of calls, taken in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import NORTHWIND, StatsTable, machine, northwind, spread
from strategist.core.gate import GateConfig
from strategist.engine.grow import GrowConfig, Grower, RoleModels
from strategist.models import FunctionModel, Sampling
from strategist.packs import load_scenario_set
from strategist.store import Store

GOOD = "STORE-CREDIT-OFFER"


# -- a zero-latency scripted world: the student improves when a strategy names GOOD ------------
def teacher(messages: list[dict[str, str]], s: Sampling) -> str:
    first = messages[0]["content"]
    if s.json_schema and "design realistic test conversations" in first:
        n = len(first) + len(messages)
        return json.dumps(
            {
                "title": f"Generated refund case {n} {s.seed}",
                "goal": f"Get a refund for item {s.seed} delivered {30 + (s.seed or 0) % 40} days ago.",
                "known_facts": [f"Order NW-{(s.seed or 0) % 100000:05d}"],
                "hidden_facts": ["The item was never worn."],
                "opening": "Hi, I want a refund please.",
                "must_say": [],
                "must_not_say": [],
                "rubric": [],
            }
        )
    if s.json_schema:
        return json.dumps(
            {
                "strategies": [
                    {
                        "trigger": "When a customer asks for a cash refund more than 30 days after delivery",
                        "guidance": f"Explain the 31-60 day rule and offer {GOOD} instead of a card refund.",
                        "example": "I can't refund the card after 30 days, but I can offer store credit.",
                    }
                ]
            }
        )
    return f"I can't refund the card after 30 days, but I can offer {GOOD}."


def student(messages: list[dict[str, str]], s: Sampling) -> str:
    if GOOD in messages[0]["content"]:
        return f"Since it is past 30 days I can offer {GOOD} for the item."
    return "Sorry, I cannot help with that."


def customer(messages: list[dict[str, str]], s: Sampling) -> str:
    return f"I still want my money back (seed {s.seed})."


def judge(messages: list[dict[str, str]], s: Sampling) -> str:
    convo = messages[0]["content"]
    convo = convo[convo.find("CONVERSATION") :]
    good = GOOD in convo
    if s.json_schema:
        n = json.loads(s.json_schema)["properties"]["passed"].get("minItems", 0)
        return json.dumps(
            {
                "passed": [good for _ in range(n)],
                "weakest_turn": 1,
                "critique": "Offered store credit." if good else "Did not offer store credit.",
            }
        )
    return str(4 + (s.seed or 0) % 2) if good else str(2 + (s.seed or 0) % 2)


@dataclass
class Result:
    calls: int
    grow_s: float
    direct_s: float

    @property
    def overhead_ms(self) -> float:
        return (self.grow_s - self.direct_s) / self.calls * 1000


def role_models() -> RoleModels:
    return RoleModels(
        teacher=FunctionModel(teacher, name="scripted/teacher"),
        student=FunctionModel(student, name="scripted/student"),
        customer=FunctionModel(customer, name="scripted/customer"),
        judge=FunctionModel(judge, name="scripted/judge"),
    )


def once(workdir: Path, i: int, config: GrowConfig) -> Result:
    store = Store.open(workdir / f"grow-{i}.db")
    domain = northwind()
    store.upsert_domain(domain)
    _, scenarios = load_scenario_set(NORTHWIND / "scenarios.yaml", domain)
    store.add_scenarios(scenarios, domain=domain)
    models = role_models()

    async def grow() -> None:
        summary = await Grower(store, domain, models, config).run()
        assert summary.status == "completed", summary.stop_reason

    start = time.perf_counter()
    asyncio.run(grow())
    grow_s = time.perf_counter() - start
    store.close()

    recorded = [(m, c) for m in vars(models).values() for c in m.calls]
    fresh = {role: FunctionModel(m.fn, name=m.name) for role, m in vars(models).items()}
    by_name = {m.name: fresh[role] for role, m in vars(models).items()}

    async def direct() -> None:
        for m, c in recorded:
            await by_name[m.name].complete(c.messages, c.sampling)

    start = time.perf_counter()
    asyncio.run(direct())
    direct_s = time.perf_counter() - start
    return Result(len(recorded), grow_s, direct_s)


def run(repeats: int, concurrency: int) -> dict[str, Any]:
    config = GrowConfig(
        rounds=2,
        scenarios=6,
        generate=2,
        max_strategies=1,
        max_turns=3,
        concurrency=concurrency,
        gate=GateConfig(samples=4, variants=1, regression=2),
    )
    with tempfile.TemporaryDirectory() as tmp:
        once(Path(tmp), -1, config)  # warm-up: imports, template compilation, first database
        results = [once(Path(tmp), i, config) for i in range(repeats)]
    overhead = [r.overhead_ms for r in results]
    return {
        "calls_per_run": results[0].calls,
        "repeats": repeats,
        "concurrency": concurrency,
        "overhead_ms_per_call": spread(overhead),
        "grow_s": [round(r.grow_s, 4) for r in results],
        "direct_s": [round(r.direct_s, 6) for r in results],
        "direct_ms_per_call": spread([r.direct_s / r.calls * 1000 for r in results])["median"],
        "target_ms_per_call": 0.1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = run(args.repeats, args.concurrency)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(machine())
    t = StatsTable()
    t.add_stats("overhead ms/call", out["overhead_ms_per_call"], "<= 0.1")
    print(t.render())
    direct = out["direct_ms_per_call"]
    print(f"{out['calls_per_run']} calls per run, {out['repeats']} runs; direct {direct:.4f} ms/call")


if __name__ == "__main__":
    main()
