"""A pre-run estimate of what a grow will cost, as a range of model calls per role.

- The low end: no scenario is weak, so nothing is coached or gated; the teacher writes its
  scenarios and every working scenario gets its ``samples`` judged dialogues.
- The high end: every scenario is weak, the teacher proposes ``max_strategies`` strategies for
  each, none is merged, and every one goes through the gate to its cap (--max-samples). A gate
  scenario's no-strategy dialogues are shared by every candidate tried on it, so they are counted
  once per scenario and sample, not once per candidate. With tools, every agent turn takes all its
  tool steps (the low end: none). With ``--harvest N``, N scenarios are harvested a round (a
  teacher call each).

Both ends count every dialogue at its full length (a customer who says the stop marker early
ends it with fewer calls) and every structured output as valid at the first attempt (each
re-ask of invalid output is one more call). Tokens come from the prompts' sizes, and cost from
the models' prices where they are known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core.domain import Domain, Scenario
from ..core.text import estimate_tokens
from .grow import GrowConfig

# Stated estimates, per call: the policy (about 4 characters a token) plus the conversation.
CONVERSATION_TOKENS = 400
COMPLETION_TOKENS = {"teacher": 400, "student": 120, "customer": 60, "judge": 200}
JUDGE_CALLS = 2  # the rubric verdict and the rating, per dialogue

PriceFn = Callable[[str, int, int], float | None]  # (model, prompt tokens, completion tokens) -> USD


@dataclass
class Estimate:
    calls: dict[str, int]  # the high end, by role
    tokens: dict[str, int]
    cost_usd: float
    unpriced: list[str]
    low_calls: dict[str, int]  # the low end, by role
    low_tokens: dict[str, int]
    low_cost_usd: float

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def total_low_calls(self) -> int:
        return sum(self.low_calls.values())

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    @property
    def total_low_tokens(self) -> int:
        return sum(self.low_tokens.values())

    def describe(self) -> str:
        text = (
            f"estimate: between {self.total_low_calls:,} and {self.total_calls:,} model calls, "
            f"~{self.total_low_tokens:,} to ~{self.total_tokens:,} tokens, "
            f"~${self.low_cost_usd:.2f} to ~${self.cost_usd:.2f}"
        )
        if self.unpriced:
            text += f" (price unknown for {', '.join(self.unpriced)})"
        return text + (
            "; the low end if no scenario is weak, the high end if every one is and every proposal "
            "is gated; dialogues are counted at full length (one the customer ends early makes "
            "fewer calls) and re-asks of invalid output come on top"
        )


def _working_sets(config: GrowConfig, train: int | None) -> list[int]:
    """How many scenarios each round works on: its new ones, topped up with training scenarios
    this run has not worked on yet (all of ``config.scenarios`` when ``train`` is unknown)."""
    new = min(config.generate, config.scenarios)
    left = train
    sizes = []
    for _ in range(config.rounds):
        if left is None:
            sizes.append(config.scenarios)
            continue
        taken = min(config.scenarios - new, left)
        sizes.append(new + taken)
        left += config.generate - new - taken  # written but not worked on: there for later rounds
    return sizes


def estimate(
    config: GrowConfig,
    domain: Domain,
    models: dict[str, str],
    price: PriceFn,
    *,
    scenarios: Sequence[Scenario] | None = None,
) -> Estimate:
    """The range of calls a grow with ``config`` can make. ``scenarios``: the domain's training
    scenarios in the database, when known (their number and turn limits narrow the range)."""
    if scenarios is not None and config.limit is not None:
        scenarios = list(scenarios)[: config.limit]  # the run works on the first ``limit`` only
    limits = [domain.max_turns, *(s.turns_limit(domain) for s in scenarios or ())]
    if config.max_turns is not None:
        limits = [min(t, config.max_turns) for t in limits]
    n = config.gate.samples
    work = _working_sets(config, None if scenarios is None else len(scenarios))
    worked = sum(work)
    writes = config.rounds * config.generate
    selection = worked * n

    gate_set = 1 + config.gate.variants + config.gate.regression  # the source, same intent, others
    train_total = None if scenarios is None else len(scenarios) + writes
    if train_total is not None:
        gate_set = min(gate_set, train_total)
    candidates = worked * config.max_strategies
    cap = config.gate.cap  # the sequential gate takes batches of fresh seeds up to its cap
    with_strategy = candidates * gate_set * cap
    gate_scenarios = worked * gate_set  # one set per coached scenario, shared by its candidates
    if train_total is not None:
        gate_scenarios = min(gate_scenarios, train_total)
    without_strategy = gate_scenarios * cap
    # The pairwise judge: one call per order, per target pair (the source and its variants).
    pairwise = 2 * candidates * (1 + config.gate.variants) * cap if config.gate.signal != "score" else 0

    tool_steps = 0
    if domain.tools is not None:
        tool_steps = config.max_tool_steps or domain.tools.max_steps

    def dialogue_calls(dialogues: int, turns: int, steps: int = 0) -> dict[str, int]:
        return {
            "student": dialogues * turns * (1 + steps),  # a call per tool step, then the reply
            "customer": dialogues * max(0, turns - 1),
            "judge": dialogues * JUDGE_CALLS,
        }

    low = {"teacher": writes, **dialogue_calls(selection, min(limits))}
    # --harvest N: a teacher call per harvested scenario, up to N a round (none when nothing is weak).
    harvests = config.rounds * min(config.harvest, max(work) if work else 0)
    high = {
        "teacher": writes + 2 * worked + harvests,  # a reference reply and a proposal per coached scenario
        **dialogue_calls(selection + with_strategy + without_strategy, max(limits), tool_steps),
    }
    high["judge"] += pairwise
    prompt = estimate_tokens(domain.policy) + CONVERSATION_TOKENS

    def tokens(calls: dict[str, int]) -> dict[str, int]:
        return {r: c * (prompt + COMPLETION_TOKENS[r]) for r, c in calls.items()}

    unpriced: list[str] = []

    def cost(calls: dict[str, int]) -> float:
        total = 0.0
        for role, c in calls.items():
            if not c:
                continue
            p = price(models[role], prompt * c, COMPLETION_TOKENS[role] * c)
            if p is None:
                if models[role] not in unpriced:
                    unpriced.append(models[role])
            else:
                total += p
        return total

    return Estimate(
        calls=high,
        tokens=tokens(high),
        cost_usd=cost(high),
        unpriced=unpriced,
        low_calls=low,
        low_tokens=tokens(low),
        low_cost_usd=cost(low),
    )
