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
