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

    Ties are broken at random (seeded), and intents are spread so that one intent does not take
    every slot when many cells are equally thin.
    """
    cells = all_cells(domain)
    rng.shuffle(cells)

    def rank(c: Cell) -> tuple[int, float]:
        st = seen.get(c.key, CellStats())
        score = st.mean_score if st.mean_score is not None else 0.0
        return st.scenarios, score

    cells.sort(key=rank)
    picked: list[Cell] = []
    used_intents: set[str] = set()
    for c in cells:  # first pass: one per intent
        if len(picked) == n:
            break
        if c.intent not in used_intents:
            picked.append(c)
            used_intents.add(c.intent)
    for c in cells:  # then fill up with the next thinnest/weakest
        if len(picked) == n:
            break
        if c not in picked:
            picked.append(c)
    return picked
