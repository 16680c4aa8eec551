"""Grow a library with scripted models: the whole pipeline, offline and instant.

Run:  .venv/bin/python examples/grow_offline.py

The scripted student only offers store credit when a strategy in its prompt tells it to, and the
scripted judge rewards that; so the gate should accept the teacher's strategy. Swap any
FunctionModel for ``resolve_model("openai/gpt-4o")`` (or ``"embedded/smollm2"``) to use a real one.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from strategist.core.gate import GateConfig
from strategist.engine.grow import GrowConfig, Grower, RoleModels
from strategist.models import FunctionModel, Sampling
from strategist.packs import load_domain, load_scenario_set
from strategist.store import Store

PACK = Path(__file__).resolve().parent.parent / "scenarios" / "northwind"
ADVICE = "offer store credit for returns between day 31 and day 60"


def student(messages: list[dict[str, str]], sampling: Sampling) -> str:
    if ADVICE in messages[0]["content"]:
        return "That order is past 30 days, so I can't refund the card, but I can offer you store credit."
    return "Sure, I will refund your card right away."


def customer(messages: list[dict[str, str]], sampling: Sampling) -> str:
    return "Okay, thank you. ###STOP###"


def judge(messages: list[dict[str, str]], sampling: Sampling) -> str:
    conversation = messages[0]["content"].split("CONVERSATION")[-1]
    good = "store credit" in conversation
    if sampling.json_schema:  # the rubric verdict
        n = json.loads(sampling.json_schema)["properties"]["passed"]["minItems"]
        critique = "Correct." if good else "Promised a card refund outside the 30-day window."
        return json.dumps({"passed": [good] * n, "weakest_turn": 1, "critique": critique})
    return "5" if good else "2"  # the overall rating


def teacher(messages: list[dict[str, str]], sampling: Sampling) -> str:
    if sampling.json_schema:  # asked to coach: propose a strategy
        return json.dumps(
            {
                "strategies": [
                    {
                        "trigger": "A customer asks for a card refund more than 30 days after delivery",
                        "guidance": f"Do not refund the card; {ADVICE}, and say so plainly.",
                        "example": "I can't refund the card after 30 days, but I can offer store credit.",
                    }
                ]
            }
        )
    return "I'm sorry, after 30 days I can offer store credit rather than a refund to your card."


async def main() -> None:
    domain = load_domain(PACK / "domain.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "example.db")
        store.upsert_domain(domain)
        _, scenarios = load_scenario_set(PACK / "scenarios.yaml", domain)
        for s in scenarios:
            store.add_scenario(s)
        models = RoleModels(
            teacher=FunctionModel(teacher, name="example/teacher"),
            student=FunctionModel(student, name="example/student"),
            customer=FunctionModel(customer, name="example/customer"),
            judge=FunctionModel(judge, name="example/judge"),
        )
        config = GrowConfig(rounds=1, scenarios=2, generate=0, gate=GateConfig(samples=3, regression=0))
        summary = await Grower(store, domain, models, config).run()
        print(f"dialogues {summary.dialogues}, candidates {summary.candidates}, accepted {summary.accepted}")
        for row in store.list_strategies(domain.id):
            ev = row.evidence
            print(f"[{row.status}] when {row.trigger}: {row.guidance}")
            print(f"    gain {ev['mean_delta']:+.3f}, 95% CI [{ev['ci_low']:+.3f}, {ev['ci_high']:+.3f}]")
        store.close()


if __name__ == "__main__":
    asyncio.run(main())
