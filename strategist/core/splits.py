"""Assigning scenarios to train / dev / test: deterministic, and stratified by intent."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping

SPLITS = ("train", "dev", "test")
_EPS = 1e-9


def _apportion(
    room: Mapping[str, int], quota: Mapping[str, float], total: int, rng: random.Random
) -> dict[str, int]:
    """Share ``total`` items between strata: each gets the whole part of its quota (at most its
    room), then the rest go one by one to the largest remainders. Ties between equal remainders
    are broken by a seeded shuffle, so no stratum is always the one left out."""
    order = sorted(room)
    rng.shuffle(order)
    out = {k: min(room[k], math.floor(quota[k] + _EPS)) for k in order}
    left = total - sum(out.values())
    by_remainder = sorted(order, key=lambda k: quota[k] - out[k], reverse=True)  # stable on ties
    while left > 0:
        open_ = [k for k in by_remainder if out[k] < room[k]]
        if not open_:
            break
        for k in open_[:left]:
            out[k] += 1
            left -= 1
    return out


def assign_splits(
    items: Iterable[tuple[int, str]], *, test: float, dev: float = 0.0, seed: int
) -> dict[int, str]:
    """Scenario id -> split, for ``items`` of (scenario id, intent).

    ``round(n * test)`` scenarios go to test and ``round(n * dev)`` to dev (halves round up), the
    rest to train. Each intent gets a share as close to those fractions as whole scenarios allow:
    an intent with one scenario cannot be split, so the rounding is settled across intents (the
    ones whose share was rounded down the most get the extra scenarios). The same items and seed
    always give the same assignment, in whatever order the items come.
    """
    if not (0.0 <= test <= 1.0 and 0.0 <= dev <= 1.0):
        raise ValueError("test and dev must each be between 0 and 1")
    if test + dev > 1.0 + _EPS:
        raise ValueError(f"test + dev is {test + dev:g}: it cannot exceed 1")
    by_intent: dict[str, list[int]] = {}
    for sid, intent in items:
        by_intent.setdefault(intent, []).append(sid)
    n = sum(len(ids) for ids in by_intent.values())
    n_test = min(n, math.floor(n * test + 0.5 + _EPS))
    n_dev = min(n - n_test, math.floor(n * dev + 0.5 + _EPS))

    sizes = {k: len(ids) for k, ids in by_intent.items()}
    to_test = _apportion(
        sizes, {k: s * test for k, s in sizes.items()}, n_test, random.Random(f"{seed}:test")
    )
    rest = {k: sizes[k] - to_test[k] for k in sizes}
    to_dev = _apportion(rest, {k: s * dev for k, s in sizes.items()}, n_dev, random.Random(f"{seed}:dev"))

    out: dict[int, str] = {}
    for intent, ids in by_intent.items():
        shuffled = sorted(ids)
        random.Random(f"{seed}:{intent}").shuffle(shuffled)
        t, d = to_test[intent], to_dev[intent]
        for i, sid in enumerate(shuffled):
            out[sid] = "test" if i < t else "dev" if i < t + d else "train"
    return out


def split_counts(assignment: Mapping[int, str], intents: Mapping[int, str]) -> dict[str, dict[str, int]]:
    """intent -> {train, dev, test} counts, by intent name."""
    out: dict[str, dict[str, int]] = {}
    for sid, split in assignment.items():
        out.setdefault(intents[sid], dict.fromkeys(SPLITS, 0))[split] += 1
    return dict(sorted(out.items()))
