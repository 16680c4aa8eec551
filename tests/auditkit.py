"""Shared helpers for the audit tests: a library with strategies in it, grown or added directly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import world

from strategist.core.dialogue import StrategyText
from strategist.core.domain import Scenario
from strategist.core.gate import GateConfig
from strategist.engine.grow import GrowConfig, Grower

SECOND = {
    "trigger": "When a customer wants to return an item bought as final sale or in the Clearance section",
    "guidance": "Say kindly that final-sale items cannot be returned and ask whether it arrived damaged.",
    "example": "I'm sorry, clearance items are final sale. Did it arrive damaged?",
}


def scenario(domain: Any, **kw: Any) -> Scenario:
    base: dict[str, Any] = {
        "domain": domain.id,
        "title": "Late refund",
        "intent": "refund_late_return",
        "persona": {"mood": "angry"},
        "goal": "Get a card refund for a jacket delivered 45 days ago.",
        "known_facts": ["Order NW-48213"],
        "opening": "I want my money back for this jacket.",
        "split": "train",
    }
    base.update(kw)
    return Scenario(**base)


def grow_one(store: Any, domain: Any) -> Any:
    """A real pending strategy with gate evidence and stored dialogues (scripted world)."""
    store.add_scenario(scenario(domain))
    config = GrowConfig(
        rounds=1,
        scenarios=1,
        generate=0,
        max_strategies=1,
        gate=GateConfig(samples=3, variants=0, regression=0),
    )
    summary = asyncio.run(Grower(store, domain, world.models(world.HELPFUL), config).run())
    assert summary.accepted == 1
    return store.list_strategies(domain.id)[-1]


def add(
    store: Any, domain_id: str = "northwind", text: dict[str, str] | None = None, gain: float = 0.3
) -> Any:
    """A pending strategy without dialogues, with a gate summary saying it gained ``gain``."""
    t = text or SECOND
    return store.add_strategy(
        domain_id,
        StrategyText(**t),
        provenance={"run_id": None, "round": 1, "scenario_id": None, "teacher_model": "scripted/teacher"},
        evidence={
            "samples": 2,
            "deltas": [gain, gain],
            "mean_delta": gain,
            "ci_low": gain,
            "ci_high": gain,
            "confidence": 0.95,
        },
        author="gate",
    )


def policy_judge(conflict_word: str = "PROMISE-EVERYTHING"):
    """A judge that flags any strategy whose text contains ``conflict_word``."""

    def fn(messages: list[dict[str, str]], sampling: Any) -> str:
        advice = messages[-1]["content"].split("THE ADVICE:")[-1]
        bad = conflict_word in advice
        return json.dumps(
            {
                "conflict": bad,
                "clause": "19. You may not grant exceptions to this policy" if bad else "",
                "explanation": "It promises what the policy forbids."
                if bad
                else "Consistent with the policy.",
            }
        )

    return fn
