"""Paired comparisons and bootstrap confidence intervals for the gate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

# With fewer pairs there is no interval, only the mean: nothing to resample (paired_bootstrap).
MIN_PAIRS_FOR_INTERVAL = 2


@dataclass(frozen=True)
class PairedResult:
    deltas: tuple[float, ...]
    mean: float
    ci_low: float
    ci_high: float
    confidence: float

    @property
    def n(self) -> int:
        return len(self.deltas)


def paired_bootstrap(
    deltas: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> PairedResult:
    """Mean paired difference with a percentile bootstrap interval.

    With fewer than two pairs, or when every delta is the same, the interval collapses to the mean
    (there is no spread to resample).
    """
    arr = np.asarray(list(deltas), dtype=float)
    if arr.size == 0:
        raise ValueError("no paired deltas")
    mean = float(arr.mean())
    if arr.size < MIN_PAIRS_FOR_INTERVAL or np.all(arr == arr[0]):
        return PairedResult(tuple(arr.tolist()), mean, mean, mean, confidence)
    res = stats.bootstrap(
        (arr,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    return PairedResult(tuple(arr.tolist()), mean, float(low), float(high), confidence)


# -- the sequential gate's test ------------------------------------------------------------------
# A group-sequential one-sided t-test with Lan-DeMets alpha spending (Pocock type): the gate may
# look at its pairs after every batch, and each look spends part of the candidate's error budget,
# so that looking often never raises the chance of accepting a candidate that does not help. Each
# look's boundary comes from the Bonferroni inequality over the looks (P(any crossing) <= the sum
# of the per-look levels), which is valid for any number of looks at any information fractions;
# it is slightly conservative next to the exact recursive integration of a planned design.


def pocock_spending(alpha: float, fraction: float) -> float:
    """The error budget spent up to information ``fraction`` (0-1] of the maximum: Lan & DeMets'
    Pocock-type function alpha * ln(1 + (e - 1) t). It spends early looks more than
    O'Brien-Fleming's, so clearly good candidates stop early."""
    t = min(max(fraction, 0.0), 1.0)
    return alpha * float(np.log1p((np.e - 1.0) * t))


@dataclass(frozen=True)
class SequentialLook:
    """One look of the sequential test: the mean of the pairs so far and its repeated confidence
    bounds (lower and upper), which hold at every look of the run with probability 1 - 2 alpha."""

    n: int
    mean: float
    low: float
    high: float
    level: float  # the share of alpha this look spent (one-sided)
    fraction: float  # information so far / the most the gate may gather


def sequential_look(
    values: Sequence[float],
    *,
    alpha: float,
    fraction: float,
    previous_fraction: float,
    min_sd: float = 0.0,
    spread_both: bool = False,
) -> SequentialLook:
    """The repeated confidence bounds after this look: mean -/+ t_{1-a_k, n-1} * s / sqrt(n), where
    a_k = spend(fraction) - spend(previous_fraction) is this look's share of ``alpha``.

    The lower bound (what accepting needs) uses a spread of at least ``min_sd``: a few identical
    values, which a judge with coarse answers gives by chance, are no proof. The upper bound (what
    stopping for futility needs) uses the spread as measured, or at least ``min_sd`` too with
    ``spread_both`` (a looser futility bound must not drop a candidate on a few identical values
    either). With fewer than two values there is no spread to estimate: the bounds are the widest
    possible for values in [-1, 1].
    """
    arr = np.asarray(list(values), dtype=float)
    n = int(arr.size)
    if n == 0:
        raise ValueError("no paired values")
    mean = float(arr.mean())
    level = max(pocock_spending(alpha, fraction) - pocock_spending(alpha, previous_fraction), 1e-12)
    if n < MIN_PAIRS_FOR_INTERVAL:
        return SequentialLook(n, mean, -1.0, 1.0, level, fraction)
    sd = float(arr.std(ddof=1))
    quantile = float(stats.t.ppf(1.0 - level, df=n - 1)) / float(np.sqrt(n))
    low, high = mean - quantile * max(sd, min_sd), mean + quantile * (max(sd, min_sd) if spread_both else sd)
    return SequentialLook(n, mean, max(low, -1.0), min(high, 1.0), level, fraction)


def bonferroni_share(alpha: float, family: int) -> float:
    """Each candidate's error budget when a run may gate up to ``family`` candidates: the chance
    that a run accepts any candidate that does not help stays at most ``alpha``, whatever the
    dependence between candidates (they share the no-strategy dialogues)."""
    return alpha / max(1, family)
