"""The statistics of an evaluation, as pure functions: per-condition summaries, pass^k, and
paired differences with bootstrap intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import comb

from .stats import PairedResult, paired_bootstrap

# The baseline a library must beat besides "no strategies": a fixed, sensible checklist that
# any support team could write without this tool. (trigger, guidance) pairs.
GENERIC_GUIDELINES: tuple[tuple[str, str], ...] = (
    (
        "The customer describes a problem or is upset",
        "Acknowledge it briefly and with empathy before anything else.",
    ),
    (
        "The request concerns an account, an order or personal data",
        "Verify the customer's identity exactly as the policy requires before sharing or changing anything.",
    ),
    (
        "The customer asks for something the policy does not allow",
        "Say so plainly, name the rule, and offer the alternatives the policy does allow.",
    ),
    (
        "You are missing a fact you need",
        "Ask one clear question instead of guessing; never invent order details, dates, prices or codes.",
    ),
    ("You are about to end your reply", "Confirm what you did or will do and the customer's next step."),
)


@dataclass(frozen=True)
class Outcome:
    """One judged dialogue of the evaluation."""

    scenario_id: int
    sample: int
    condition: str
    score: float
    checks_passed: int
    checks_total: int  # every deterministic check, the action checks among them
    dialogue_id: int | None = None
    actions_passed: int = 0
    actions_total: int = 0

    def passed(self, threshold: float) -> bool:
        """Success: every deterministic check passed and the score reached the threshold."""
        return self.checks_passed == self.checks_total and self.score >= threshold


@dataclass(frozen=True)
class ConditionSummary:
    condition: str
    dialogues: int
    mean_score: float | None
    check_pass_rate: float | None  # passed checks / all checks, over every dialogue
    pass_rate: float | None  # share of dialogues that passed
    pass_hat_k: float | None  # the chance that all k samples of a scenario pass
    k: int
    action_pass_rate: float | None = None  # passed action checks / all action checks (None: no actions)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of the chance that k samples drawn from n (c of them passing) all pass."""
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} samples")
    return comb(c, k) / comb(n, k)


def summarise(outcomes: Sequence[Outcome], condition: str, k: int, threshold: float) -> ConditionSummary:
    mine = [o for o in outcomes if o.condition == condition]
    if not mine:
        return ConditionSummary(condition, 0, None, None, None, None, k)
    checks = sum(o.checks_total for o in mine)
    actions = sum(o.actions_total for o in mine)
    by_scenario: dict[int, list[Outcome]] = {}
    for o in mine:
        by_scenario.setdefault(o.scenario_id, []).append(o)
    per_scenario = [
        pass_hat_k(len(v), sum(o.passed(threshold) for o in v), k)
        for v in by_scenario.values()
        if len(v) >= k
    ]
    return ConditionSummary(
        condition=condition,
        dialogues=len(mine),
        mean_score=sum(o.score for o in mine) / len(mine),
        check_pass_rate=sum(o.checks_passed for o in mine) / checks if checks else None,
        pass_rate=sum(o.passed(threshold) for o in mine) / len(mine),
        pass_hat_k=sum(per_scenario) / len(per_scenario) if per_scenario else None,
        k=k,
        action_pass_rate=sum(o.actions_passed for o in mine) / actions if actions else None,
    )


def paired_deltas(outcomes: Sequence[Outcome], a: str, b: str, scenario_id: int | None = None) -> list[float]:
    """Score of ``a`` minus score of ``b`` for every (scenario, sample) judged under both."""
    index: Mapping[tuple[int, int, str], Outcome] = {
        (o.scenario_id, o.sample, o.condition): o for o in outcomes
    }
    out = []
    for (sid, sample, cond), o in sorted(index.items()):
        if cond != a or (scenario_id is not None and sid != scenario_id):
            continue
        other = index.get((sid, sample, b))
        if other is not None:
            out.append(o.score - other.score)
    return out


def compare(
    outcomes: Sequence[Outcome], a: str, b: str, *, seed: int = 0, scenario_id: int | None = None
) -> PairedResult | None:
    deltas = paired_deltas(outcomes, a, b, scenario_id)
    return paired_bootstrap(deltas, seed=seed) if deltas else None
