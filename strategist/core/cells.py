"""Choosing which persona x intent cells the next scenarios should cover."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass

from .domain import Domain, persona_key


@dataclass(frozen=True)
class Cell:
    persona: dict[str, str]
    intent: str

    @property
    def key(self) -> tuple[str, str]:
        return persona_key(self.persona), self.intent


@dataclass
class CellStats:
    scenarios: int = 0
    mean_score: float | None = None


def all_cells(domain: Domain) -> list[Cell]:
    dims = sorted(domain.persona_dimensions)
    combos = itertools.product(*(domain.persona_dimensions[d] for d in dims))
    personas = [dict(zip(dims, combo, strict=True)) for combo in combos]
    return [Cell(p, i.id) for i in domain.intents for p in personas]


# A cell's priority is its (estimated) score plus these penalties; the lowest goes first.
COVERAGE_PENALTY = 0.15  # per scenario the cell already has
SPREAD_PENALTY = 0.1  # per cell of the same intent already picked in this call
UNKNOWN_SCORE = 0.5  # for cells of intents never scored


def pick_cells(
    domain: Domain, seen: Mapping[tuple[str, str], CellStats], n: int, rng: random.Random
) -> list[Cell]:
    """Aim at weak cells: a cell's estimated score (its own mean, else its intent's mean, else a
    neutral prior) plus a penalty per scenario it already has and per pick of its intent in this
    call. Weak intents get more scenarios, thin cells get covered, and one intent does not take
    every slot. Ties are broken at random (seeded).
    """
    cells = all_cells(domain)
    rng.shuffle(cells)
    by_intent: dict[str, list[float]] = {}
    for (_persona, intent), st in seen.items():
        if st.mean_score is not None:
            by_intent.setdefault(intent, []).append(st.mean_score)
    intent_mean = {i: sum(v) / len(v) for i, v in by_intent.items()}
    picked: list[Cell] = []
    per_intent: dict[str, int] = {}

    def priority(c: Cell) -> float:
        st = seen.get(c.key, CellStats())
        estimate = st.mean_score if st.mean_score is not None else intent_mean.get(c.intent, UNKNOWN_SCORE)
        return estimate + COVERAGE_PENALTY * st.scenarios + SPREAD_PENALTY * per_intent.get(c.intent, 0)

    while len(picked) < min(n, len(cells)):
        best = min((c for c in cells if c not in picked), key=priority)  # stable: shuffled order breaks ties
        picked.append(best)
        per_intent[best.intent] = per_intent.get(best.intent, 0) + 1
    return picked
