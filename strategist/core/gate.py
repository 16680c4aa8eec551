"""The gate's decision rule, as pure logic: keep a candidate only if it measurably helps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .stats import PairedResult, paired_bootstrap


@dataclass(frozen=True)
class GateConfig:
    samples: int = 3  # customer seeds per scenario, the same on both sides
    variants: int = 1  # other scenarios of the same intent the candidate is also tried on
    regression: int = 1  # scenarios of other intents it must not make worse
    threshold: float = 0.0  # the interval's lower bound must be above this
    confidence: float = 0.95
    regression_tolerance: float = 0.05  # mean regression delta may not fall below -tolerance
    min_pairs: int = 3  # fewer judged pairs than this is no evidence: a bootstrap of 1-2 values is degenerate
    resamples: int = 2000


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    reason: str
    paired: PairedResult | None
    regression_mean: float | None


def decide(
    deltas: Sequence[float], regression_deltas: Sequence[float], config: GateConfig, *, seed: int = 0
) -> GateDecision:
    """``deltas`` are with-minus-without scores on the target scenarios, one per (scenario, seed)."""
    if len(deltas) < config.min_pairs:
        return GateDecision(False, f"too few judged pairs ({len(deltas)} < {config.min_pairs})", None, None)
    paired = paired_bootstrap(deltas, confidence=config.confidence, resamples=config.resamples, seed=seed)
    reg = sum(regression_deltas) / len(regression_deltas) if regression_deltas else None
    ci = f"mean {paired.mean:+.3f}, {config.confidence:.0%} CI [{paired.ci_low:+.3f}, {paired.ci_high:+.3f}]"
    if paired.ci_low <= config.threshold:
        return GateDecision(
            False, f"no clear improvement: {ci}, lower bound not above {config.threshold:+.3f}", paired, reg
        )
    if reg is not None and reg < -config.regression_tolerance:
        return GateDecision(False, f"hurts other scenarios: regression mean {reg:+.3f} ({ci})", paired, reg)
    return GateDecision(True, f"helps: {ci}", paired, reg)
