"""Table models. The schema itself is created and changed only by migrations.py;
tests/test_migrations.py checks that the two agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, DateTime, UniqueConstraint
from sqlmodel import Field, Session, SQLModel

from ..core.domain import Scenario, persona_key
from ..errors import NotFoundError

Row = TypeVar("Row", bound=SQLModel)


def utcnow() -> datetime:
    return datetime.now(UTC)


def fetch(s: Session, table: type[Row], key: Any, missing: str) -> Row:
    """The row of ``table`` with this primary key, or NotFoundError(``missing``)."""
    row = s.get(table, key)
    if row is None:
        raise NotFoundError(missing)
    return row


def _json(nullable: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_column=Column(JSON, nullable=True))
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def _time() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class DomainRow(SQLModel, table=True):
    __tablename__ = "domains"
    id: str = Field(primary_key=True)
    name: str
    spec: dict[str, Any] = _json()
    created_at: datetime = _time()
    updated_at: datetime = _time()
    # The pack file it was loaded from and that file's digest then (migration m006).
    source: str | None = None
    source_digest: str | None = None


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    id: int | None = Field(default=None, primary_key=True)
    domain_id: str = Field(foreign_key="domains.id", index=True)
    command: str
    status: str = "running"  # running | completed | stopped | failed
    stop_reason: str | None = None
    config: dict[str, Any] = _json()
    summary: dict[str, Any] = _json()
    started_at: datetime = _time()
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class ScenarioRow(SQLModel, table=True):
    __tablename__ = "scenarios"
    id: int | None = Field(default=None, primary_key=True)
    domain_id: str = Field(foreign_key="domains.id", index=True)
    title: str
    intent: str
    persona_key: str
    difficulty: str
    origin: str
    split: str = Field(index=True)
    spec: dict[str, Any] = _json()
    run_id: int | None = Field(default=None, foreign_key="runs.id")
    round: int | None = None
    created_at: datetime = _time()

    @classmethod
    def of(cls, scenario: Scenario, *, run_id: int | None = None, round: int | None = None) -> ScenarioRow:
        return cls(
            domain_id=scenario.domain,
            title=scenario.title,
            intent=scenario.intent,
            persona_key=persona_key(scenario.persona),
            difficulty=scenario.difficulty,
            origin=scenario.origin,
            split=scenario.split,
            spec=scenario.model_dump(mode="json", exclude={"id"}),
            run_id=run_id,
            round=round,
        )


class DialogueRow(SQLModel, table=True):
    __tablename__ = "dialogues"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="runs.id", index=True)
    round: int | None = None
    scenario_id: int = Field(foreign_key="scenarios.id", index=True)
    condition: str  # baseline | candidate | ...
    # No foreign key: candidates point back at their source dialogue, and a cycle complicates DDL.
    candidate_id: int | None = Field(default=None, index=True)
    sample: int = 0
    seed: int
    student_model: str
    customer_model: str
    ended_by: str
    error: str | None = None
    turns: list[Any] = _json_list()
    strategy_ids: list[Any] = _json_list()
    created_at: datetime = _time()


class JudgementRow(SQLModel, table=True):
    __tablename__ = "judgements"
    id: int | None = Field(default=None, primary_key=True)
    dialogue_id: int = Field(foreign_key="dialogues.id", index=True)
    judge_model: str
    score: float
    rating: float | None = None
    rating_method: str | None = None
    checks: list[Any] = _json_list()
    rubric: list[Any] = _json_list()
    critique: str = ""
    weakest_turn: int | None = None
    created_at: datetime = _time()
    # Migration m009: scored without the rubric answer; the simulated customer's faults.
    partial: bool = False
    faults: list[Any] = _json_list()


class CandidateRow(SQLModel, table=True):
    __tablename__ = "candidates"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="runs.id", index=True)
    round: int | None = None
    domain_id: str = Field(foreign_key="domains.id")
    scenario_id: int = Field(foreign_key="scenarios.id")
    source_dialogue_id: int | None = Field(default=None, foreign_key="dialogues.id")
    trigger: str
    guidance: str
    example: str = ""
    teacher_model: str
    outcome: str = "proposed"  # proposed | accepted | rejected | merged | error
    reason: str = ""
    evidence: dict[str, Any] = _json()
    strategy_id: int | None = Field(default=None, foreign_key="strategies.id")
    created_at: datetime = _time()


class StrategyRow(SQLModel, table=True):
    __tablename__ = "strategies"
    id: int | None = Field(default=None, primary_key=True)
    domain_id: str = Field(foreign_key="domains.id", index=True)
    trigger: str
    guidance: str
    example: str = ""
    status: str = Field(default="pending", index=True)  # pending | approved | rejected | retired
    version: int = 1
    provenance: dict[str, Any] = _json()
    evidence: dict[str, Any] = _json()
    times_retrieved: int = 0
    created_at: datetime = _time()
    updated_at: datetime = _time()
    # The judge's verdict against the domain policy (migration m003_audit); None until checked.
    policy_check: dict[str, Any] | None = _json(nullable=True)


class StrategyVersionRow(SQLModel, table=True):
    __tablename__ = "strategy_versions"
    __table_args__ = (UniqueConstraint("strategy_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    strategy_id: int = Field(foreign_key="strategies.id", index=True)
    version: int
    trigger: str
    guidance: str
    example: str = ""
    author: str
    created_at: datetime = _time()


class ReviewRow(SQLModel, table=True):
    __tablename__ = "reviews"
    id: int | None = Field(default=None, primary_key=True)
    strategy_id: int = Field(foreign_key="strategies.id", index=True)
    version: int
    reviewer: str
    action: str  # created | approved | rejected | retired | edited | ...
    note: str = ""
    before: dict[str, Any] | None = _json(nullable=True)
    after: dict[str, Any] | None = _json(nullable=True)
    created_at: datetime = _time()


class LlmCallRow(SQLModel, table=True):
    __tablename__ = "llm_calls"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="runs.id", index=True)
    role: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    cost_usd: float | None = None
    cache_hit: bool = False
    ok: bool = True
    error: str | None = None
    created_at: datetime = _time()


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="runs.id", index=True)
    round: int | None = None
    kind: str  # failure | budget | info
    message: str
    detail: dict[str, Any] = _json()
    created_at: datetime = _time()


class ResponseCacheRow(SQLModel, table=True):
    __tablename__ = "response_cache"
    key: str = Field(primary_key=True, max_length=64)
    model: str
    completion: dict[str, Any] = _json()
    created_at: datetime = _time()


class ConversationRow(SQLModel, table=True):
    """A real conversation: an imported transcript or one captured by ``serve --capture``. Stored
    redacted (OpenAI-format messages); judged offline; harvested into a scenario (migration m007)."""

    __tablename__ = "conversations"
    id: int | None = Field(default=None, primary_key=True)
    domain_id: str = Field(foreign_key="domains.id", index=True)
    source: str = Field(index=True)  # transcript | traffic
    external_id: str | None = None  # the transcript's id, or the conversation id a client sent
    # Traffic: a digest of the conversation so far (before redaction), to find it when it goes on.
    exchange_hash: str | None = Field(default=None, index=True)
    messages: list[Any] = _json_list()
    # Per message: the refs of the strategies in the prompt that answered it (assistant messages).
    strategies: list[Any] = _json_list()
    meta: dict[str, Any] = _json()
    redactions: dict[str, Any] = _json()
    started_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    score: float | None = None
    judgement: dict[str, Any] | None = _json(nullable=True)
    judged_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    scenario_id: int | None = Field(default=None, foreign_key="scenarios.id")
    created_at: datetime = _time()
    updated_at: datetime = _time()


class StrategyOutcomeRow(SQLModel, table=True):
    """How often a strategy version was in the prompt of a captured conversation the judge found
    good, or poor: evidence from production (migration m007)."""

    __tablename__ = "strategy_outcomes"
    strategy_id: int = Field(foreign_key="strategies.id", primary_key=True)
    version: int = Field(primary_key=True)
    good: int = 0
    poor: int = 0
    updated_at: datetime = _time()


class ReleaseRow(SQLModel, table=True):
    """An immutable snapshot of the approved strategies (migration m008)."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("name"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str
    note: str = ""
    created_by: str
    size: int  # strategies in it: a promote checks every one of them is there
    created_at: datetime = _time()


class ReleaseStrategyRow(SQLModel, table=True):
    __tablename__ = "release_strategies"
    release_id: int = Field(foreign_key="releases.id", primary_key=True)
    strategy_id: int = Field(foreign_key="strategies.id", primary_key=True)
    version: int
    domain_id: str


class ReleaseLabelRow(SQLModel, table=True):
    """Where a label (``production``) points now; its history is in release_actions."""

    __tablename__ = "release_labels"
    label: str = Field(primary_key=True)
    release_id: int = Field(foreign_key="releases.id")
    updated_by: str
    updated_at: datetime = _time()


class ReleaseActionRow(SQLModel, table=True):
    """The releases' part of the review trail: created, promoted, rolled back; who and when."""

    __tablename__ = "release_actions"
    id: int | None = Field(default=None, primary_key=True)
    action: str  # created | promoted | rolled_back
    release_id: int = Field(foreign_key="releases.id", index=True)
    label: str | None = None
    previous_release_id: int | None = Field(default=None, foreign_key="releases.id")
    actor: str
    note: str = ""
    created_at: datetime = _time()
