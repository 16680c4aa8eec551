"""A pre-run estimate of what a grow will cost: model calls per role when every scenario is weak
and every proposal gated (the most the plan can need) and every structured output is valid at
the first attempt (each re-ask of invalid output is one more call), with tokens from the
prompts' sizes and prices where the model's price is known."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.domain import Domain
from .grow import GrowConfig

# Stated estimates, per call: the policy (about 4 characters a token) plus the conversation.
CONVERSATION_TOKENS = 400
COMPLETION_TOKENS = {"teacher": 400, "student": 120, "customer": 60, "judge": 200}

PriceFn = Callable[[str, int, int], float | None]  # (model, prompt tokens, completion tokens) -> USD


@dataclass
class Estimate:
    calls: dict[str, int]
    tokens: dict[str, int]
    cost_usd: float
    unpriced: list[str]

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    def describe(self) -> str:
        text = (
            f"estimate (at most, plus re-asks of invalid output): {self.total_calls:,} model calls, "
            f"~{self.total_tokens:,} tokens, ~${self.cost_usd:.2f}"
        )
        if self.unpriced:
            text += f" (price unknown for {', '.join(self.unpriced)})"
        return text


def estimate(config: GrowConfig, domain: Domain, models: dict[str, str], price: PriceFn) -> Estimate:
    turns = domain.max_turns if config.max_turns is None else min(domain.max_turns, config.max_turns)
    n = config.gate.samples
    gate_scenarios = 1 + config.gate.variants + config.gate.regression
    candidates = config.scenarios * config.max_strategies
    selection = config.scenarios * n
    gate = candidates * gate_scenarios * n * 2  # with and without; shared baselines make it less
    dialogues = config.rounds * (selection + gate)
    calls = {
        "teacher": config.rounds * (config.generate + 2 * config.scenarios),
        "student": dialogues * turns,
        "customer": dialogues * max(0, turns - 1),
        "judge": dialogues * 2,
    }
    prompt = len(domain.policy) // 4 + CONVERSATION_TOKENS
    tokens = {r: c * (prompt + COMPLETION_TOKENS[r]) for r, c in calls.items()}
    cost, unpriced = 0.0, []
    for role, c in calls.items():
        if not c:
            continue
        p = price(models[role], prompt * c, COMPLETION_TOKENS[role] * c)
        if p is None:
            if models[role] not in unpriced:
                unpriced.append(models[role])
        else:
            cost += p
    return Estimate(calls, tokens, cost, unpriced)
