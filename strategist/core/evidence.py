"""The gate's evidence for a candidate, as one typed record.

The grow engine writes it; the store keeps it as JSON; the CLI, the audit page and the YAML
exchange read it. A library file carries the whole record (every pair included), so an
exported-and-imported strategy reads exactly like a grown one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

GateSignal = Literal["score", "pairwise", "both"]
CandidateSource = Literal["weakest_turn", "best_vs_worst", "best_run", "teacher_reply"]
PairwiseAnswer = Literal["A", "B", "tie"]


class PairwiseVote(BaseModel):
    """The pairwise judge's answer for one order of a pair: which position it preferred and, where
    the backend returned log-probabilities, the probability on each side (renormalised over A, B
    and tie)."""

    model_config = ConfigDict(extra="forbid")

    order: Literal["with_first", "without_first"]
    answer: PairwiseAnswer
    method: Literal["logprobs", "parsed"] = "parsed"
    p_with: float | None = None
    p_without: float | None = None
    p_tie: float | None = None

    @property
    def winner(self) -> Literal["with", "without", "tie"]:
        """The answer in terms of the pair, whatever the order."""
        if self.answer == "tie":
            return "tie"
        first = self.answer == "A"
        return "with" if first == (self.order == "with_first") else "without"

    @property
    def preference(self) -> float:
        """For the with-dialogue: +1 preferred, -1 not, 0 tie; the probability difference with
        log-probabilities."""
        if self.p_with is not None and self.p_without is not None:
            return self.p_with - self.p_without
        return {"with": 1.0, "without": -1.0, "tie": 0.0}[self.winner]


def pair_preference(votes: Sequence[PairwiseVote]) -> float | None:
    """The pair's pairwise value in [-1, 1] from its two orders: with log-probabilities the mean of
    the two orders' probability differences (a judge that always prefers one position scores 0);
    otherwise +1 or -1 only when both orders agree, and 0 (a tie) when they disagree."""
    if len(votes) < 2:
        return None
    if all(v.p_with is not None and v.p_without is not None for v in votes):
        return sum(v.preference for v in votes) / len(votes)
    winners = {v.winner for v in votes}
    return {"with": 1.0, "without": -1.0}.get(winners.pop(), 0.0) if len(winners) == 1 else 0.0


class GatePair(BaseModel):
    """One paired comparison: the same scenario and customer seed, without and with the candidate."""

    model_config = ConfigDict(extra="forbid")

    scenario_id: int | None = None
    sample: int | None = None
    seed: int | None = None
    regression: bool = False  # a scenario of another intent, which the candidate must not hurt
    without_dialogue_id: int | None = None
    with_dialogue_id: int | None = None
    without_score: float | None = None
    with_score: float | None = None
    delta: float
    intent: str | None = None
    batch: int | None = None  # the gate's batch (1 = the first --samples seeds)
    # Scored on the parts both judgements have (a rubric answer failed and fell back).
    partial: bool = False
    # Both orders of the pairwise judge, and the pair's value from them (see pair_preference).
    pairwise: list[PairwiseVote] = Field(default_factory=list)
    preference: float | None = None
    # Simulator faults found in either dialogue: the pair is shown but left out of the statistics.
    faults: list[str] = Field(default_factory=list)

    @property
    def counted(self) -> bool:
        return not self.faults


class GateBatch(BaseModel):
    """The sequential gate after one batch: the bounds of each signal and what it concluded."""

    model_config = ConfigDict(extra="forbid")

    batch: int
    pairs: int  # counted target pairs so far
    verdict: Literal["accept", "reject", "continue"]
    score_mean: float | None = None
    score_low: float | None = None
    score_high: float | None = None
    pairwise_mean: float | None = None
    pairwise_low: float | None = None
    pairwise_high: float | None = None
    level: float | None = None  # the share of the error budget this look spent


class GateEvidence(BaseModel):
    """What the gate measured and decided, plus the coaching context the candidate came from."""

    model_config = ConfigDict(extra="forbid")

    signal: GateSignal = "score"
    samples: int | None = None
    max_samples: int | None = None
    alpha: float | None = None  # this candidate's error budget (one-sided), after the run's share
    min_gain: float | None = None
    effect: float | None = None  # the gain the gate was sized to find (its futility bar)
    futility_beta: float | None = None
    threshold: float | None = None
    confidence: float | None = None
    deltas: list[float] = Field(default_factory=list)  # target pairs only: what the interval is over
    mean_delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    regression_deltas: list[float] = Field(default_factory=list)
    regression_mean: float | None = None
    regression_by_intent: dict[str, float] = Field(default_factory=dict)
    pairwise_mean: float | None = None
    pairwise_low: float | None = None
    pairwise_high: float | None = None
    batches: list[GateBatch] = Field(default_factory=list)
    pairs: list[GatePair] = Field(default_factory=list)
    flagged_pairs: int = 0  # pairs left out for a simulator fault
    unjudged_pairs: int = 0  # pairs with a side that could not be judged
    decision: str | None = None
    # Where the candidate came from: the weakest turn against the teacher's reply, or the student's
    # best run against its worst on the same scenario (best_run: the best run itself, quoted;
    # teacher_reply: the teacher's reply at the weakest turn, quoted).
    source: CandidateSource | None = None
    best_dialogue_id: int | None = None
    worst_dialogue_id: int | None = None
    # Where the candidate came from: the weakest student turn, the teacher's reply, the critique.
    weakest_turn: int | None = None
    student_reply: str | None = None
    reference_reply: str | None = None
    critique: str | None = None

    @field_validator("pairs", mode="before")
    @classmethod
    def _count_from_old_files(cls, value: Any) -> Any:
        # Library files of version 0.1 held only the number of pairs; the pairs themselves are unknown.
        return [] if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def n_pairs(self) -> int:
        """Target pairs the interval was computed over."""
        return len(self.deltas) or sum(1 for p in self.pairs if not p.regression and p.counted)

    @property
    def target_pairs(self) -> list[GatePair]:
        return [p for p in self.pairs if not p.regression]

    @property
    def decided(self) -> bool:
        return self.mean_delta is not None

    @classmethod
    def from_stored(cls, data: Mapping[str, Any] | None) -> GateEvidence:
        """Read what a database holds, leniently: a field that does not validate (a database written
        by another version) is left out rather than failing the page or command that shows it."""
        values = {k: v for k, v in (data or {}).items() if k in cls.model_fields}
        for _ in range(len(values) + 1):
            try:
                return cls.model_validate(values)
            except ValidationError as exc:
                bad = {e["loc"][0] for e in exc.errors() if e.get("loc")}
                if isinstance(values.get("pairs"), list) and "pairs" in bad:
                    kept = [p for p in values["pairs"] if _valid_pair(p)]
                    if len(kept) < len(values["pairs"]):
                        values["pairs"] = kept
                        continue
                values = {k: v for k, v in values.items() if k not in bad}
        return cls()

    def stored(self) -> dict[str, Any]:
        """The JSON the database keeps."""
        return self.model_dump(mode="json")


def _valid_pair(value: Any) -> bool:
    try:
        GatePair.model_validate(value)
    except ValidationError:
        return False
    return True
