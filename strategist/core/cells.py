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


def pick_cells(
    domain: Domain, seen: Mapping[tuple[str, str], CellStats], n: int, rng: random.Random
) -> list[Cell]:
    """Aim at thin cells first (fewest scenarios), then weak ones (lowest mean score).

    Among equally thin cells, intents picked less often in this call come first, so one intent
    does not take every slot; remaining ties are broken at random (seeded).
    """
    cells = all_cells(domain)
    rng.shuffle(cells)
    picked: list[Cell] = []
    per_intent: dict[str, int] = {}

    def rank(c: Cell) -> tuple[int, int, float]:
        st = seen.get(c.key, CellStats())
        score = st.mean_score if st.mean_score is not None else 0.0
        return st.scenarios, per_intent.get(c.intent, 0), score

    while len(picked) < n and len(picked) < len(cells):
        best = min(
            (c for c in cells if c not in picked), key=rank
        )  # min is stable: shuffled order breaks ties
        picked.append(best)
        per_intent[best.intent] = per_intent.get(best.intent, 0) + 1
    return picked
