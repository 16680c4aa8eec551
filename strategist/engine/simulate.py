"""A dialogue: the customer opens, then student and customer alternate until the stop marker or
the turn limit. Every dialogue has a seed; each turn's seed derives from it, so the same seed on
two sides of a comparison gives the customer the same randomness."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..core.dialogue import Dialogue, StrategyText, Turn
from ..core.domain import Domain, Scenario
from ..core.seeds import derive_seed
from ..errors import ModelError, one_line
from ..roles import Customer, Student

StrategyPicker = Callable[[Sequence[Turn]], Sequence[StrategyText]]


async def simulate(
    scenario: Scenario,
    domain: Domain,
    student: Student,
    customer: Customer,
    *,
    seed: int,
    sample: int = 0,
    condition: str = "baseline",
    strategies: Sequence[StrategyText] | StrategyPicker = (),
    max_turns: int | None = None,
) -> Dialogue:
    """Run one dialogue. A model failure ends it with ``ended_by='error'``; it never raises
    ModelError. Budget errors do propagate: the run must stop."""
    turns: list[Turn] = [Turn(role="customer", content=scenario.opening)]
    d = Dialogue(
        scenario_id=scenario.id,
        seed=seed,
        sample=sample,
        condition=condition,
        student_model=student.model.name,
        customer_model=customer.model.name,
    )
    limit = scenario.turns_limit(domain)
    if max_turns is not None:
        limit = min(limit, max_turns)
    try:
        for k in range(limit):
            picked = list(strategies(turns) if callable(strategies) else strategies)
            c = await student.reply(turns, picked, seed=derive_seed(seed, "student", k))
            # Only stored strategies and candidates have refs; fixed guidelines are not recorded per turn.
            refs = [s.ref for s in picked if s.id is not None]
            turns.append(Turn(role="student", content=c.text.strip(), strategies=refs))
            if k == limit - 1:
                break
            r = await customer.reply(scenario, turns, seed=derive_seed(seed, "customer", k))
            if r.text:
                turns.append(Turn(role="customer", content=r.text))
            if r.stop:
                d.ended_by = "stop_marker"
                break
    except ModelError as exc:
        d.ended_by, d.error = "error", one_line(exc)
    d.turns = turns
    return d
