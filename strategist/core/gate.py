"""The gate's decision rules, as pure logic: keep a candidate only if it measurably helps.

``decide`` is the fixed-sample rule (one batch, a percentile-bootstrap interval); the grow engine
uses ``decide_look``, the sequential rule: after each batch of fresh seeds it accepts, rejects, or
asks for another batch (see ``stats.sequential_look``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .stats import PairedResult, SequentialLook, bonferroni_share, paired_bootstrap, sequential_look

GateSignalName = Literal["score", "pairwise", "both"]
Verdict = Literal["accept", "reject", "continue"]
# The least spread accepting assumes, per signal (stats.sequential_look): a score delta's smallest
# steps are a check or a rating point (about 0.05); a pairwise value is -1, 0 or +1 without
# log-probabilities.
MIN_SD = {"score": 0.05, "pairwise": 0.25}
DEFAULT_BATCHES = 8


@dataclass(frozen=True)
class GateConfig:
    samples: int = 3  # customer seeds per scenario in the first batch, the same on both sides
    variants: int = 1  # other scenarios of the same intent the candidate is also tried on
    regression: int = 1  # scenarios of other intents it must not make worse
    threshold: float = 0.0  # the lower confidence bound must be above this
    confidence: float = 0.95  # 1 - the chance that a run accepts any candidate that does not help
    regression_tolerance: float = 0.05  # no regression intent's mean delta may fall below -tolerance
    min_pairs: int = 3  # fewer judged pairs than this is no evidence
    resamples: int = 2000  # the fixed rule's bootstrap
    # The sequential gate: batches of `samples` fresh seeds until a decision, at most `max_samples`
    # seeds per scenario (None: 8 batches, sized by benchmarks/bench_gate.py: power 0.8 at +0.1 on
    # the embedded judge's noise; most candidates stop far earlier).
    max_samples: int | None = None
    signal: GateSignalName = "score"
    # Stop for futility once the upper bound is below threshold + min_gain: the candidate cannot be
    # worth keeping even if it helps a little.
    min_gain: float = 0.03
    # The gain the gate is sized to find. It also stops for futility once a looser upper bound (its
    # chance of being wrong spent like alpha, up to futility_beta over the looks) is below
    # threshold + effect: a candidate that helps this much is then dropped with a chance of at most
    # futility_beta. Stopping early never makes accepting easier, so alpha is untouched.
    effect: float = 0.1
    futility_beta: float = 0.1
    # Candidates a run may gate at most (rounds x scenarios x proposals); each gets confidence's
    # error budget divided by this (Bonferroni). None: 1.
    family: int | None = None

    @property
    def cap(self) -> int:
        return self.max_samples if self.max_samples is not None else DEFAULT_BATCHES * self.samples

    @property
    def batches(self) -> int:
        return max(1, -(-max(self.cap, self.samples) // self.samples))

    @property
    def alpha(self) -> float:
        """One candidate's error budget (one-sided)."""
        return bonferroni_share(1.0 - self.confidence, self.family or 1)

    def signals(self) -> tuple[str, ...]:
        return ("score", "pairwise") if self.signal == "both" else (self.signal,)


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    reason: str
    paired: PairedResult | None
    regression_mean: float | None


def decide(
    deltas: Sequence[float], regression_deltas: Sequence[float], config: GateConfig, *, seed: int = 0
) -> GateDecision:
    """The fixed-sample rule. ``deltas`` are with-minus-without scores on the target scenarios, one
    per (scenario, seed)."""
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


@dataclass(frozen=True)
class LookDecision:
    """What the sequential gate concluded after one batch."""

    verdict: Verdict
    reason: str
    looks: dict[str, SequentialLook]  # by signal ("score", "pairwise")
    regression_by_intent: dict[str, float]  # mean score change per regression intent


def _bounds(look: SequentialLook) -> str:
    return f"mean {look.mean:+.3f} [{look.low:+.3f}, {look.high:+.3f}] (n={look.n})"


def decide_look(
    values: Mapping[str, Sequence[float]],
    regression: Mapping[str, Sequence[float]],
    config: GateConfig,
    *,
    fraction: float,
    previous_fraction: float,
    final: bool,
) -> LookDecision:
    """The sequential rule after a batch.

    ``values`` holds, per signal of ``config``, the target pairs' values so far (score deltas, or
    pairwise preferences in [-1, 1]); ``regression`` the score deltas of the regression pairs per
    intent. Accept when every signal's lower bound is above the threshold and no regression intent's
    mean fell by more than the tolerance; reject as soon as a signal's upper bound is below
    threshold + min_gain (it cannot help enough), or a regression intent fell too far once the
    targets cleared; else go on, and at the last batch reject.
    """
    reg = {intent: sum(v) / len(v) for intent, v in sorted(regression.items()) if v}
    n = min((len(values.get(s, ())) for s in config.signals()), default=0)
    if n < config.min_pairs:
        if final:
            return LookDecision("reject", f"too few judged pairs ({n} < {config.min_pairs})", {}, reg)
        return LookDecision("continue", f"{n} judged pairs so far", {}, reg)
    looks = {
        s: sequential_look(
            values[s],
            alpha=config.alpha,
            fraction=1.0 if final else fraction,
            previous_fraction=previous_fraction,
            min_sd=MIN_SD[s],
        )
        for s in config.signals()
    }
    text = "; ".join(f"{s} {_bounds(look)}" for s, look in looks.items())
    futile = [s for s, look in looks.items() if look.high < config.threshold + config.min_gain]
    if futile:
        bar = config.threshold + config.min_gain
        return LookDecision(
            "reject", f"no clear improvement: {text}; upper bound below {bar:+.3f} ({futile[0]})", looks, reg
        )
    if not final and config.futility_beta > 0:
        bar = config.threshold + config.effect
        for s in config.signals():
            loose = sequential_look(
                values[s],
                alpha=config.futility_beta,
                fraction=fraction,
                previous_fraction=previous_fraction,
                min_sd=MIN_SD[s],
                spread_both=True,
            )
            if loose.high < bar:
                return LookDecision(
                    "reject",
                    f"futile: {text}; {s} cannot reach {bar:+.3f} "
                    f"(upper bound {loose.high:+.3f} at level {loose.level:.3f})",
                    looks,
                    reg,
                )
    if all(look.low > config.threshold for look in looks.values()):
        worst = min(reg.items(), key=lambda kv: kv[1], default=None)
        if worst is not None and worst[1] < -config.regression_tolerance:
            return LookDecision(
                "reject",
                f"hurts other scenarios: intent {worst[0]} mean {worst[1]:+.3f} ({text})",
                looks,
                reg,
            )
        return LookDecision("accept", f"helps: {text}", looks, reg)
    if final:
        return LookDecision(
            "reject",
            f"no clear improvement: {text}; lower bound not above {config.threshold:+.3f}",
            looks,
            reg,
        )
    return LookDecision("continue", text, looks, reg)
