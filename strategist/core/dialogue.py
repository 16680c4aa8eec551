"""Dialogues, judgements and strategies as plain data."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EndedBy = Literal["stop_marker", "max_turns", "error"]
RatingMethod = Literal["logprobs", "parsed"]


class StrategyText(BaseModel):
    """What the student sees of a strategy (or of a candidate the gate is testing)."""

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    version: int = 1
    kind: Literal["strategy", "candidate"] = "strategy"
    trigger: str
    guidance: str
    example: str = ""

    @property
    def ref(self) -> str:
        """How dialogues record it: ``strategy:12@v2`` or ``candidate:5``."""
        if self.kind == "candidate":
            return f"candidate:{self.id}"
        return f"strategy:{self.id}@v{self.version}"


class Turn(BaseModel):
    role: Literal["customer", "student"]
    content: str
    # Refs (StrategyText.ref) of what was in the student's prompt for this turn (student turns only).
    strategies: list[str] = Field(default_factory=list)


class Dialogue(BaseModel):
    id: int | None = None
    scenario_id: int | None = None
    seed: int
    sample: int = 0
    condition: str = "baseline"
    turns: list[Turn] = Field(default_factory=list)
    ended_by: EndedBy = "max_turns"
    error: str | None = None
    student_model: str = ""
    customer_model: str = ""

    @property
    def student_turns(self) -> list[Turn]:
        return [t for t in self.turns if t.role == "student"]

    def transcript(self, *, numbered: bool = False) -> str:
        lines = []
        n = 0
        for t in self.turns:
            if t.role == "student":
                n += 1
                who = f"Agent (turn {n})" if numbered else "Agent"
            else:
                who = "Customer"
            lines.append(f"{who}: {t.content}")
        return "\n".join(lines)

    def prefix_before_student_turn(self, k: int) -> list[Turn]:
        """The turns that precede the k-th student turn (1-based)."""
        seen = 0
        for i, t in enumerate(self.turns):
            if t.role == "student":
                seen += 1
                if seen == k:
                    return self.turns[:i]
        return list(self.turns)


class CheckResult(BaseModel):
    kind: Literal["must_say", "must_not_say"]
    check: str
    passed: bool


class RubricResult(BaseModel):
    item: str
    passed: bool
    reason: str = ""


class Judgement(BaseModel):
    id: int | None = None
    dialogue_id: int | None = None
    judge_model: str = ""
    checks: list[CheckResult] = Field(default_factory=list)
    rubric: list[RubricResult] = Field(default_factory=list)
    rating: float | None = None  # 1..5
    rating_method: RatingMethod | None = None
    score: float  # 0..1, see scoring.overall_score
    critique: str = ""
    weakest_turn: int | None = None  # 1-based index among student turns
