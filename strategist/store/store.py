"""The one place that reads and writes the database."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from ..core.dialogue import Dialogue, Judgement, StrategyText
from ..core.domain import Domain, Scenario
from ..core.evidence import GateEvidence
from ..core.runs import FAILURE_KINDS, CandidateOutcome, EventKind, RunCommand, RunStatus
from ..core.splits import SPLITS
from ..errors import NotFoundError, StrategistError, one_line
from . import migrations
from .audit import AuditStoreMixin
from .conversations import ConversationStoreMixin
from .engine import make_engine
from .releases import ReleaseStoreMixin
from .search import SearchStoreMixin
from .tables import (
    CandidateRow,
    DialogueRow,
    DomainRow,
    EventRow,
    JudgementRow,
    LlmCallRow,
    ResponseCacheRow,
    ReviewRow,
    Row,
    RunRow,
    ScenarioRow,
    StrategyRow,
    StrategyVersionRow,
    fetch,
    utcnow,
)


def _put_domain(s: Session, domain: Domain, source: tuple[str, str | None] | None = None) -> None:
    """Insert the domain, or update it where its spec changed (one session, not committed).
    ``source`` is the pack file it comes from and that file's digest."""
    row = s.get(DomainRow, domain.id)
    spec = domain.model_dump(mode="json")
    if row is None:
        row = DomainRow(id=domain.id, name=domain.name, spec=spec)
    elif row.spec != spec:
        row.name, row.spec, row.updated_at = domain.name, spec, utcnow()
    if source is not None:
        row.source, row.source_digest = source
    s.add(row)


def _evidence(evidence: GateEvidence | dict[str, Any]) -> dict[str, Any]:
    return evidence.stored() if isinstance(evidence, GateEvidence) else dict(evidence)


_MIGRATE_TRIES = 10
_MIGRATE_LOCK = 0x5374726174  # "Strat": the PostgreSQL advisory lock taken while migrating
# What SQLite says when another process applied the same migration first.
_SQLITE_MIGRATION_RACE = ("already exists", "duplicate column", "UNIQUE constraint failed: schema_migrations")


class Store(SearchStoreMixin, AuditStoreMixin, ConversationStoreMixin, ReleaseStoreMixin):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The connection of a transaction() open on this thread: the writes that run inside it.
        self._bound = threading.local()

    @classmethod
    def open(cls, target: str | Path, *, migrate: bool = True) -> Store:
        store = cls(make_engine(target))
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> list[str]:
        """Apply pending migrations. Several processes may open a new database at once: on
        PostgreSQL they take turns (an advisory lock); on SQLite one that finds another half-way
        through (a table that already exists, a migration already recorded) waits and looks again."""
        for attempt in range(_MIGRATE_TRIES):
            try:
                with self._migration_lock():
                    return migrations.migrate(self.engine)
            except sa.exc.DatabaseError as exc:
                racing = self.engine.dialect.name == "sqlite" and any(
                    sign in str(exc.orig) for sign in _SQLITE_MIGRATION_RACE
                )
                if racing and attempt + 1 < _MIGRATE_TRIES:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise StrategistError(
                    f"{self.engine.url}: not a usable database ({one_line(exc.orig or exc)})"
                ) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.engine.dialect.name != "postgresql":
            yield
            return
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATE_LOCK})
            conn.commit()  # the lock belongs to the session, not to this transaction
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATE_LOCK})
                conn.commit()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every plain write (dialogues, judgements, ledger rows, cached responses) this thread
        makes inside the block in one transaction: one commit instead of one each. A block
        inside another joins it. ORM sessions (``session()``) do not: on SQLite one opened inside
        would wait for this transaction's lock, so only plain writes belong in the block (the run
        writer's groups: results, ledger rows, cached responses)."""
        outer = getattr(self._bound, "conn", None)
        with self._begin() as conn:
            self._bound.conn = conn
            try:
                yield
            finally:
                self._bound.conn = outer

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        """A connection in a transaction: this thread's open transaction() if there is one."""
        conn = getattr(self._bound, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    def _insert(self, table: type[Any], **values: Any) -> int:
        """A plain INSERT returning the new id: for rows written many times a run (dialogues,
        judgements), where building ORM objects would cost more than the write."""
        values.setdefault("created_at", utcnow())
        with self._begin() as conn:
            # Values as parameters, not .values(): the compiled statement is then reused.
            key = conn.execute(sa.insert(table.__table__), values).inserted_primary_key
            assert key is not None
            return int(key[0])

    def _get(self, table: type[Row], key: Any, missing: str) -> Row:
        """The row with this primary key, or NotFoundError(``missing``)."""
        with self.session() as s:
            return fetch(s, table, key, missing)

    def _add(self, row: Any) -> Any:
        with self.session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    # -- domains ---------------------------------------------------------------------------
    def upsert_domain(self, domain: Domain, *, source: tuple[str, str | None] | None = None) -> None:
        with self.session() as s:
            _put_domain(s, domain, source)
            s.commit()

    def get_domain(self, domain_id: str) -> Domain:
        row = self._get(DomainRow, domain_id, f"no domain '{domain_id}' in the database")
        return Domain.model_validate(row.spec)

    def domain_row(self, domain_id: str) -> DomainRow | None:
        with self.session() as s:
            return s.get(DomainRow, domain_id)

    def list_domains(self) -> list[DomainRow]:
        with self.session() as s:
            return list(s.exec(select(DomainRow).order_by(DomainRow.id)))

    # -- scenarios -------------------------------------------------------------------------
    def add_scenario(
        self, scenario: Scenario, *, run_id: int | None = None, round: int | None = None
    ) -> Scenario:
        row = self._add(ScenarioRow.of(scenario, run_id=run_id, round=round))
        return scenario.model_copy(update={"id": row.id})

    @staticmethod
    def _scenario(row: ScenarioRow) -> Scenario:
        # The split column is authoritative: it can be reassigned without rewriting the spec.
        return Scenario.model_validate({**row.spec, "id": row.id, "split": row.split})

    def get_scenario(self, scenario_id: int) -> Scenario:
        return self._scenario(self._get(ScenarioRow, scenario_id, f"no scenario {scenario_id}"))

    def list_scenarios(self, domain: str | None = None, split: str | None = None) -> list[Scenario]:
        q = select(ScenarioRow).order_by(col(ScenarioRow.id))
        if domain:
            q = q.where(ScenarioRow.domain_id == domain)
        if split:
            q = q.where(ScenarioRow.split == split)
        with self.session() as s:
            return [self._scenario(r) for r in s.exec(q)]

    def add_scenarios(
        self,
        scenarios: Sequence[Scenario],
        *,
        domain: Domain | None = None,
        source: tuple[str, str | None] | None = None,
    ) -> list[Scenario]:
        """Store scenarios (and, if given, insert or update their domain) in one transaction: all
        or nothing."""
        with self.session() as s:
            if domain is not None:
                _put_domain(s, domain, source)
                s.flush()  # the domain row first: the scenarios' foreign key points at it
            rows = [ScenarioRow.of(sc) for sc in scenarios]
            s.add_all(rows)
            s.commit()
            return [sc.model_copy(update={"id": r.id}) for sc, r in zip(scenarios, rows, strict=True)]

    def import_scenarios(self, scenarios: Sequence[Scenario]) -> tuple[list[Scenario], list[Scenario]]:
        """Add the scenarios not stored yet, by their stable key (``key``, else the title), in one
        transaction; returns (added, skipped). A repeat within ``scenarios`` is skipped too."""
        with self.session() as s:
            seen = {
                (domain_id, Scenario.model_validate(spec).stable_key)
                for domain_id, spec in s.exec(select(ScenarioRow.domain_id, ScenarioRow.spec))
            }
        new: list[Scenario] = []
        skipped: list[Scenario] = []
        for sc in scenarios:
            k = (sc.domain, sc.stable_key)
            (skipped if k in seen else new).append(sc)
            seen.add(k)
        return self.add_scenarios(new), skipped

    def set_splits(self, assignments: dict[int, str]) -> None:
        """Move scenarios to splits (scenario id -> train | dev | test) in one transaction; an
        unknown id or split changes nothing."""
        bad = sorted({v for v in assignments.values() if v not in SPLITS})
        if bad:
            raise ValueError(f"unknown split '{bad[0]}'")
        ids = sorted(assignments)
        with self.session() as s:
            found = set(s.exec(select(ScenarioRow.id).where(col(ScenarioRow.id).in_(ids))))
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFoundError(f"no scenario {missing[0]}")
            for split in SPLITS:
                chosen = [i for i in ids if assignments[i] == split]
                if chosen:
                    s.connection().execute(
                        sa.update(ScenarioRow).where(col(ScenarioRow.id).in_(chosen)).values(split=split)
                    )
            s.commit()

    def scenario_scores(self, domain: str, condition: str = "baseline") -> dict[int, tuple[float, int]]:
        """scenario id -> (mean score, number of judged dialogues) under ``condition``."""
        q = (
            select(DialogueRow.scenario_id, func.avg(JudgementRow.score), func.count(col(JudgementRow.id)))
            .join(JudgementRow, col(JudgementRow.dialogue_id) == DialogueRow.id)
            .join(ScenarioRow, col(ScenarioRow.id) == DialogueRow.scenario_id)
            .where(ScenarioRow.domain_id == domain, DialogueRow.condition == condition)
            .group_by(col(DialogueRow.scenario_id))
        )
        with self.session() as s:
            return {sid: (float(avg), int(n)) for sid, avg, n in s.exec(q)}

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, domain_id: str, command: RunCommand, config: dict[str, Any]) -> int:
        run = self._add(RunRow(domain_id=domain_id, command=command, config=config))
        assert run.id is not None
        return run.id

    def finish_run(
        self, run_id: int, status: RunStatus, summary: dict[str, Any], stop_reason: str | None = None
    ) -> None:
        with self.session() as s:
            run = fetch(s, RunRow, run_id, f"no run {run_id}")
            run.status, run.summary, run.stop_reason, run.finished_at = status, summary, stop_reason, utcnow()
            s.add(run)
            s.commit()

    def get_run(self, run_id: int) -> RunRow:
        return self._get(RunRow, run_id, f"no run {run_id}")

    def list_runs(self) -> list[RunRow]:
        with self.session() as s:
            return list(s.exec(select(RunRow).order_by(col(RunRow.id))))

    # -- dialogues and judgements ------------------------------------------------------------
    def add_dialogue(
        self, d: Dialogue, *, run_id: int | None, round: int | None, candidate_id: int | None = None
    ) -> Dialogue:
        if d.scenario_id is None:
            raise ValueError("dialogue has no scenario id")
        new_id = self._insert(
            DialogueRow,
            run_id=run_id,
            round=round,
            scenario_id=d.scenario_id,
            condition=d.condition,
            candidate_id=candidate_id,
            sample=d.sample,
            seed=d.seed,
            student_model=d.student_model,
            customer_model=d.customer_model,
            ended_by=d.ended_by,
            error=d.error,
            turns=[t.model_dump() for t in d.turns],
            strategy_ids=sorted({i for t in d.turns for i in t.strategies}),
        )
        return d.model_copy(update={"id": new_id})

    @staticmethod
    def _dialogue(row: DialogueRow) -> Dialogue:
        return Dialogue.model_validate(
            {
                **row.model_dump(
                    include={
                        "id",
                        "scenario_id",
                        "seed",
                        "sample",
                        "condition",
                        "ended_by",
                        "error",
                        "student_model",
                        "customer_model",
                    }
                ),
                "turns": row.turns,
            }
        )

    def get_dialogue(self, dialogue_id: int) -> Dialogue:
        return self._dialogue(self._get(DialogueRow, dialogue_id, f"no dialogue {dialogue_id}"))

    def dialogues_for_scenario(self, scenario_id: int) -> list[DialogueRow]:
        with self.session() as s:
            q = (
                select(DialogueRow)
                .where(DialogueRow.scenario_id == scenario_id)
                .order_by(col(DialogueRow.id))
            )
            return list(s.exec(q))

    def add_judgement(self, j: Judgement) -> Judgement:
        if j.dialogue_id is None:
            raise ValueError("judgement has no dialogue id")
        new_id = self._insert(
            JudgementRow,
            dialogue_id=j.dialogue_id,
            judge_model=j.judge_model,
            score=j.score,
            rating=j.rating,
            rating_method=j.rating_method,
            checks=[c.model_dump() for c in j.checks],
            rubric=[r.model_dump() for r in j.rubric],
            critique=j.critique,
            weakest_turn=j.weakest_turn,
            partial=j.partial,
            faults=list(j.faults),
        )
        return j.model_copy(update={"id": new_id})

    def judgement_for(self, dialogue_id: int) -> Judgement | None:
        with self.session() as s:
            row = s.exec(select(JudgementRow).where(JudgementRow.dialogue_id == dialogue_id)).first()
        if row is None:
            return None
        return Judgement.model_validate(row.model_dump())

    # -- candidates and strategies -----------------------------------------------------------
    def add_candidate(self, row: CandidateRow) -> CandidateRow:
        return self.add_candidates([row])[0]

    def add_candidates(self, rows: Sequence[CandidateRow]) -> list[CandidateRow]:
        """Store proposals together; a merged one is also noted on the strategy it merged into."""
        with self.session() as s:
            for row in rows:
                s.add(row)
            # Written first: the ids go into the notes, and on SQLite the write lock is then held
            # before the strategies are read.
            s.flush()
            merges = sorted(
                (row.strategy_id, row.id or 0)
                for row in rows
                if row.outcome == "merged" and row.strategy_id is not None
            )
            for sid, group in itertools.groupby(merges, key=lambda m: m[0]):
                # Locked (PostgreSQL), targets in id order: two runs merging into one strategy
                # wait for each other instead of losing a note or deadlocking. NO KEY UPDATE: rows
                # that merely refer to the strategy are not held up.
                target = s.get(StrategyRow, sid, with_for_update={"key_share": True}, populate_existing=True)
                if target is not None:
                    noted = [*target.provenance.get("merged_candidates", []), *(cid for _, cid in group)]
                    target.provenance = {**target.provenance, "merged_candidates": noted}
                    s.add(target)
            s.commit()
            for row in rows:
                s.refresh(row)
            return list(rows)

    def update_candidate(
        self,
        candidate_id: int,
        *,
        outcome: CandidateOutcome | None = None,
        reason: str | None = None,
        evidence: GateEvidence | dict[str, Any] | None = None,
    ) -> None:
        with self.session() as s:
            row = fetch(s, CandidateRow, candidate_id, f"no candidate {candidate_id}")
            if outcome is not None:
                row.outcome = outcome
            if reason is not None:
                row.reason = reason
            if evidence is not None:
                row.evidence = _evidence(evidence)
            s.add(row)
            s.commit()

    def list_candidates(self, run_id: int | None = None) -> list[CandidateRow]:
        q = select(CandidateRow).order_by(col(CandidateRow.id))
        if run_id is not None:
            q = q.where(CandidateRow.run_id == run_id)
        with self.session() as s:
            return list(s.exec(q))

    def add_strategy(
        self,
        domain_id: str,
        text: StrategyText,
        *,
        provenance: dict[str, Any],
        evidence: GateEvidence | dict[str, Any],
        author: str,
        status: str = "pending",
    ) -> StrategyRow:
        """A new strategy with its first version and a 'created' review record, in one transaction."""
        with self.session() as s:
            row = self._new_strategy(s, domain_id, text, provenance, evidence, author, status)
            s.commit()
            s.refresh(row)
            return row

    def accept_candidate(
        self,
        candidate_id: int,
        text: StrategyText,
        *,
        provenance: dict[str, Any],
        evidence: GateEvidence | dict[str, Any],
        reason: str,
    ) -> StrategyRow:
        """The gate's acceptance: the pending strategy and the candidate's outcome in one transaction,
        so an interrupted run can never hold one without the other."""
        with self.session() as s:
            cand = fetch(s, CandidateRow, candidate_id, f"no candidate {candidate_id}")
            row = self._new_strategy(s, cand.domain_id, text, provenance, evidence, "gate", "pending")
            cand.outcome, cand.reason, cand.strategy_id = "accepted", reason, row.id
            cand.evidence = _evidence(evidence)
            s.add(cand)
            s.commit()
            s.refresh(row)
            return row

    @staticmethod
    def _new_strategy(
        s: Session,
        domain_id: str,
        text: StrategyText,
        provenance: dict[str, Any],
        evidence: GateEvidence | dict[str, Any],
        author: str,
        status: str,
    ) -> StrategyRow:
        row = StrategyRow(
            domain_id=domain_id,
            trigger=text.trigger,
            guidance=text.guidance,
            example=text.example,
            status=status,
            version=1,
            provenance=provenance,
            evidence=_evidence(evidence),
        )
        s.add(row)
        s.flush()
        assert row.id is not None
        s.add(
            StrategyVersionRow(
                strategy_id=row.id,
                version=1,
                trigger=text.trigger,
                guidance=text.guidance,
                example=text.example,
                author=author,
            )
        )
        after = {
            "trigger": text.trigger,
            "guidance": text.guidance,
            "example": text.example,
            "status": status,
        }
        s.add(
            ReviewRow(
                strategy_id=row.id,
                version=1,
                reviewer=author,
                action="created",
                note="accepted by the gate",
                before=None,
                after=after,
            )
        )
        return row

    def get_strategy(self, strategy_id: int) -> StrategyRow:
        return self._get(StrategyRow, strategy_id, f"no strategy {strategy_id}")

    def list_strategies(
        self, domain: str | None = None, statuses: Sequence[str] | None = None
    ) -> list[StrategyRow]:
        q = select(StrategyRow).order_by(col(StrategyRow.id))
        if domain:
            q = q.where(StrategyRow.domain_id == domain)
        if statuses:
            q = q.where(col(StrategyRow.status).in_(list(statuses)))
        with self.session() as s:
            return list(s.exec(q))

    def count_strategies(self, domain: str, statuses: Sequence[str]) -> int:
        q = (
            select(func.count())
            .select_from(StrategyRow)
            .where(StrategyRow.domain_id == domain, col(StrategyRow.status).in_(list(statuses)))
        )
        with self.session() as s:
            return int(s.exec(q).one())

    def strategy_versions(self, strategy_id: int) -> list[StrategyVersionRow]:
        with self.session() as s:
            q = select(StrategyVersionRow).where(StrategyVersionRow.strategy_id == strategy_id)
            return list(s.exec(q.order_by(col(StrategyVersionRow.version))))

    def reviews(self, strategy_id: int) -> list[ReviewRow]:
        with self.session() as s:
            q = select(ReviewRow).where(ReviewRow.strategy_id == strategy_id).order_by(col(ReviewRow.id))
            return list(s.exec(q))

    # -- ledger and events ---------------------------------------------------------------------
    def record_call(self, row: LlmCallRow) -> None:
        self.record_calls([row.model_dump(exclude={"id"})])

    def record_calls(self, rows: Sequence[dict[str, Any]]) -> None:
        """Ledger rows (``LlmCallRow`` fields) in one transaction: a plain executemany INSERT,
        without the ORM's unit of work."""
        if rows:
            with self._begin() as conn:
                conn.execute(sa.insert(LlmCallRow.__table__), list(rows))  # type: ignore[attr-defined]

    def record_event(
        self,
        run_id: int | None,
        kind: EventKind,
        message: str,
        *,
        round: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self._add(EventRow(run_id=run_id, round=round, kind=kind, message=message, detail=detail or {}))

    def events(self, run_id: int) -> list[EventRow]:
        with self.session() as s:
            return list(s.exec(select(EventRow).where(EventRow.run_id == run_id).order_by(col(EventRow.id))))

    def call_totals(self, run_id: int | None = None) -> dict[str, Any]:
        """Real model calls and their tokens; cache hits are counted apart (they cost nothing)."""
        q = sa.select(
            func.count(col(LlmCallRow.id)),
            func.coalesce(func.sum(LlmCallRow.prompt_tokens), 0),
            func.coalesce(func.sum(LlmCallRow.completion_tokens), 0),
            func.coalesce(func.sum(LlmCallRow.cost_usd), 0.0),
            func.count(col(LlmCallRow.cost_usd)),
        ).where(col(LlmCallRow.cache_hit).is_(False))
        hits = select(func.count(col(LlmCallRow.id))).where(col(LlmCallRow.cache_hit).is_(True))
        if run_id is not None:
            q = q.where(col(LlmCallRow.run_id) == run_id)
            hits = hits.where(LlmCallRow.run_id == run_id)
        with self.session() as s:
            calls, prompt, completion, cost, priced = s.execute(q).one()
            n_hits = s.exec(hits).one()
        return {
            "calls": int(calls),
            "prompt_tokens": int(prompt),
            "completion_tokens": int(completion),
            "cache_hits": int(n_hits),
            "cost_usd": float(cost),
            "unpriced_calls": int(calls) - int(priced),
        }

    def run_counts(self, run_id: int) -> dict[str, Any]:
        """Dialogues, generated scenarios and the mean no-strategy score of one run."""
        with self.session() as s:
            dialogues = s.exec(
                select(func.count()).select_from(DialogueRow).where(DialogueRow.run_id == run_id)
            ).one()
            mean = s.exec(
                select(func.avg(JudgementRow.score))
                .join(DialogueRow, col(DialogueRow.id) == JudgementRow.dialogue_id)
                .where(DialogueRow.run_id == run_id, DialogueRow.condition == "baseline")
            ).one()
            made = dict(
                s.exec(
                    select(ScenarioRow.origin, func.count())
                    .where(ScenarioRow.run_id == run_id)
                    .group_by(col(ScenarioRow.origin))
                ).all()
            )
            judged = s.exec(
                select(func.count())
                .select_from(JudgementRow)
                .join(DialogueRow, col(DialogueRow.id) == JudgementRow.dialogue_id)
                .where(DialogueRow.run_id == run_id)
            ).one()
            used = s.exec(
                select(func.count(func.distinct(DialogueRow.scenario_id))).where(DialogueRow.run_id == run_id)
            ).one()
        return {
            "dialogues": int(dialogues),
            "judged": int(judged),
            "scenarios_used": int(used),
            "scenarios_generated": int(made.get("generated", 0)),
            "scenarios_harvested": int(made.get("harvested", 0)),
            "mean_baseline_score": float(mean) if mean is not None else None,
        }

    def judging_counts(self, run_id: int) -> dict[str, int]:
        """How well a run's dialogues could be judged: ``dialogues`` (those that ended without a
        model error), ``unjudged`` (no judgement: the judge's answer failed), ``partial`` (judged on
        the checks and the rating only) and ``flagged`` (the simulated customer broke character)."""
        with self.session() as s:
            rows = list(
                s.exec(
                    select(DialogueRow.error, JudgementRow.partial, JudgementRow.faults)
                    .join(JudgementRow, col(JudgementRow.dialogue_id) == DialogueRow.id, isouter=True)
                    .where(DialogueRow.run_id == run_id)
                )
            )
        ok = [r for r in rows if r[0] is None]
        return {
            "dialogues": len(ok),
            "unjudged": sum(1 for _, partial, _f in ok if partial is None),
            "partial": sum(1 for _, partial, _f in ok if partial),
            "flagged": sum(1 for _, _p, faults in ok if faults),
        }

    # -- a run's progress (for resume) -------------------------------------------------------
    def reopen_run(self, run_id: int) -> None:
        with self.session() as s:
            run = fetch(s, RunRow, run_id, f"no run {run_id}")
            run.status, run.finished_at = "running", None
            s.add(run)
            s.commit()

    def run_dialogues(self, run_id: int) -> list[tuple[int | None, Dialogue, Judgement | None]]:
        """(candidate id, dialogue, judgement or None) for every dialogue of a run."""
        q = (
            select(DialogueRow, JudgementRow)
            .join(JudgementRow, col(JudgementRow.dialogue_id) == DialogueRow.id, isouter=True)
            .where(DialogueRow.run_id == run_id)
            .order_by(col(DialogueRow.id))
        )
        with self.session() as s:
            rows = list(s.exec(q))
        return [
            (d.candidate_id, self._dialogue(d), Judgement.model_validate(j.model_dump()) if j else None)
            for d, j in rows
        ]

    def failed_dialogue_ids(self, run_id: int) -> set[int]:
        """Dialogues whose judging failed and was recorded (not to be judged again on resume)."""
        q = select(EventRow).where(EventRow.run_id == run_id, EventRow.kind == "judge_failure")
        with self.session() as s:
            events = list(s.exec(q))
        return {int(e.detail["dialogue_id"]) for e in events if "dialogue_id" in e.detail}

    def failure_count(self, run_id: int) -> int:
        q = select(func.count()).select_from(EventRow)
        q = q.where(EventRow.run_id == run_id, col(EventRow.kind).in_(FAILURE_KINDS))
        with self.session() as s:
            return int(s.exec(q).one())

    def run_scenario_ids(
        self, run_id: int, below_sample: int, *, round_no: int | None = None, before_round: int | None = None
    ) -> set[int]:
        """Scenarios with no-strategy dialogues of sample index below ``below_sample`` in a run."""
        q = select(DialogueRow.scenario_id).where(
            DialogueRow.run_id == run_id,
            DialogueRow.condition == "baseline",
            DialogueRow.sample < below_sample,
        )
        if round_no is not None:
            q = q.where(DialogueRow.round == round_no)
        if before_round is not None:
            q = q.where(col(DialogueRow.round) < before_round)
        with self.session() as s:
            return set(s.exec(q.distinct()))

    def scenarios_of_run(self, run_id: int, round_no: int, origin: str = "generated") -> list[Scenario]:
        q = select(ScenarioRow).where(
            ScenarioRow.run_id == run_id, ScenarioRow.round == round_no, ScenarioRow.origin == origin
        )
        with self.session() as s:
            return [self._scenario(r) for r in s.exec(q.order_by(col(ScenarioRow.id)))]

    def candidates_for(self, run_id: int, round_no: int, scenario_id: int) -> list[CandidateRow]:
        q = select(CandidateRow).where(
            CandidateRow.run_id == run_id,
            CandidateRow.round == round_no,
            CandidateRow.scenario_id == scenario_id,
        )
        with self.session() as s:
            return list(s.exec(q.order_by(col(CandidateRow.id))))

    # -- response cache ------------------------------------------------------------------------
    def cache_get(self, key: str) -> dict[str, Any] | None:
        table = ResponseCacheRow.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(table.c.completion).where(table.c.key == key)).first()
        return found[0] if found is not None else None

    def cache_keys(self, model: str) -> set[str]:
        table = ResponseCacheRow.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(table.c.key).where(table.c.model == model)).scalars())

    def cache_put(self, key: str, model: str, completion: dict[str, Any]) -> None:
        self.cache_put_many([(key, model, completion)])

    def cache_put_many(self, items: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """Store responses (key, model, completion) in one transaction; a key written meanwhile
        by another process wins (it is the same request)."""
        if not items:
            return
        table = ResponseCacheRow.__table__  # type: ignore[attr-defined]
        now = utcnow()
        rows = [{"key": k, "model": m, "completion": c, "created_at": now} for k, m, c in items]
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
            with self._begin() as conn:
                conn.execute(insert(table).on_conflict_do_nothing(index_elements=["key"]), rows)
            return
        for row in rows:  # other databases: one row at a time, a duplicate key skipped
            with contextlib.suppress(sa.exc.IntegrityError), self.engine.begin() as conn:
                conn.execute(sa.insert(table).values(**row))

    def count(self, table: type[Any], **where: Any) -> int:
        q = select(func.count()).select_from(table)
        for k, v in where.items():
            q = q.where(getattr(table, k) == v)
        with self.session() as s:
            return int(s.exec(q).one())
