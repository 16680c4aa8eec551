"""The gate's evidence for a candidate, as one typed record.

The grow engine writes it; the store keeps it as JSON; the CLI, the audit page and the YAML
exchange read it. A library file carries the whole record (every pair included), so an
exported-and-imported strategy reads exactly like a grown one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

GateSignal = Literal["score"]


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


class GateEvidence(BaseModel):
    """What the gate measured and decided, plus the coaching context the candidate came from."""

    model_config = ConfigDict(extra="forbid")

    signal: GateSignal = "score"
    samples: int | None = None
    threshold: float | None = None
    confidence: float | None = None
    deltas: list[float] = Field(default_factory=list)  # target pairs only: what the interval is over
    mean_delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    regression_deltas: list[float] = Field(default_factory=list)
    regression_mean: float | None = None
    pairs: list[GatePair] = Field(default_factory=list)
    decision: str | None = None
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
        return len(self.deltas) or sum(1 for p in self.pairs if not p.regression)

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
