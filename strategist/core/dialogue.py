"""Dialogues, judgements and strategies as plain data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EndedBy = Literal["stop_marker", "max_turns", "error"]
# Tool results shown to a judge or teacher are cut to this many characters: they read the action.
TRANSCRIPT_RESULT_CHARS = 400


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


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


class ToolFunction(BaseModel):
    name: str
    arguments: str  # JSON text, as the model wrote it (it may not parse: executing it decides)


class ToolCall(BaseModel):
    """One tool call of the agent, in OpenAI's shape (``tool_calls`` of an assistant message)."""

    id: str
    type: Literal["function"] = "function"
    function: ToolFunction

    @property
    def name(self) -> str:
        return self.function.name

    def parsed_arguments(self) -> dict[str, Any] | None:
        """The arguments as an object, or None when they are not a JSON object."""
        try:
            value = json.loads(self.function.arguments or "{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class Turn(BaseModel):
    """One message of a dialogue. A student turn with ``tool_calls`` is a step towards a reply (the
    agent acting); each call's result follows as a ``tool`` turn. The other student turns are what
    the customer reads."""

    role: Literal["customer", "student", "tool"]
    content: str
    # Refs (StrategyText.ref) of what was in the student's prompt for this turn (student turns only).
    strategies: list[str] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    # Tool turns: which call this answers, the tool, whether it failed and how long it took.
    tool_call_id: str | None = None
    name: str | None = None
    error: str | None = None
    latency_ms: float | None = None
    # A reply written after the agent used its tool steps for the turn (the bound was hit).
    tool_limit: bool = False

    @property
    def is_reply(self) -> bool:
        """A student message to the customer (not a tool step)."""
        return self.role == "student" and not self.tool_calls

    def as_message(self, *, agent_side: bool = True) -> dict[str, Any]:
        """The turn as an OpenAI-style message from the agent's side (the customer is the user)."""
        if self.role == "tool":
            return {"role": "tool", "tool_call_id": self.tool_call_id or "", "content": self.content}
        if self.role == "customer":
            return {"role": "user", "content": self.content}
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        return msg


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
        """What the agent said to the customer (its tool steps left out)."""
        return [t for t in self.turns if t.is_reply]

    @property
    def tool_calls(self) -> list[tuple[ToolCall, Turn | None]]:
        """Every tool call the agent made, with the turn holding its result (None if it has none)."""
        results = {t.tool_call_id: t for t in self.turns if t.role == "tool"}
        return [(c, results.get(c.id)) for t in self.turns for c in t.tool_calls]

    def transcript(self, *, numbered: bool = False, result_chars: int = TRANSCRIPT_RESULT_CHARS) -> str:
        """The dialogue as text for a judge or a teacher; the agent's tool calls and their results
        are shown where they happened (long results cut to ``result_chars``)."""
        lines = []
        n = 0
        for t in self.turns:
            if t.role == "tool":
                status = "error" if t.error else "result"
                lines.append(f"  [{t.name or 'tool'} {status}: {_cut(t.content, result_chars)}]")
                continue
            if t.role == "student":
                for c in t.tool_calls:
                    lines.append(f"  [agent calls {c.name}({c.function.arguments})]")
                if t.tool_calls:
                    continue
                n += 1
                who = f"Agent (turn {n})" if numbered else "Agent"
            else:
                who = "Customer"
            lines.append(f"{who}: {t.content}")
        return "\n".join(lines)

    def agent_turn(self, k: int) -> list[Turn]:
        """What the agent did in its k-th turn (1-based): its tool steps and their results, then
        its reply."""
        start = len(self.prefix_before_student_turn(k))
        out: list[Turn] = []
        for t in self.turns[start:]:
            out.append(t)
            if t.is_reply:
                break
        return out

    def prefix_before_student_turn(self, k: int) -> list[Turn]:
        """The turns that precede the k-th reply to the customer (1-based), tool steps of that
        turn included."""
        seen = 0
        start = 0  # where the agent's steps towards the current reply began
        for i, t in enumerate(self.turns):
            if t.role == "customer":
                start = i + 1
            if t.is_reply:
                seen += 1
                if seen == k:
                    return self.turns[:start]
        return list(self.turns)


CheckKind = Literal["must_say", "must_not_say", "action", "forbidden_action"]
ACTION_KINDS: tuple[CheckKind, ...] = ("action", "forbidden_action")


class CheckResult(BaseModel):
    kind: CheckKind
    check: str
    passed: bool

    @property
    def is_action(self) -> bool:
        return self.kind in ACTION_KINDS


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
    score: float  # 0..1, see overall_score
    critique: str = ""
    weakest_turn: int | None = None  # 1-based index among student turns
    # The rubric answer failed after its re-asks: scored on the checks and the rating only.
    partial: bool = False
    # Where the simulated customer broke character (core.faults): such a dialogue is no evidence.
    faults: list[str] = Field(default_factory=list)

    def score_on(self, *, rubric: bool) -> float:
        """The score from the checks, the rating and (if ``rubric``) the rubric: two judgements
        are compared on the parts both have."""
        return overall_score(self.checks, self.rubric if rubric else [], self.rating)


RATING_MIN, RATING_MAX = 1, 5


def overall_score(
    checks: Sequence[CheckResult], rubric: Sequence[RubricResult], rating: float | None
) -> float:
    """Mean of the parts that exist: check pass rate, rubric pass rate, rating rescaled to [0, 1]."""
    parts: list[float] = []
    if checks:
        parts.append(sum(c.passed for c in checks) / len(checks))
    if rubric:
        parts.append(sum(r.passed for r in rubric) / len(rubric))
    if rating is not None:
        parts.append((rating - RATING_MIN) / (RATING_MAX - RATING_MIN))
    return sum(parts) / len(parts) if parts else 0.0
