"""Store methods for real conversations: imported transcripts and traffic captured by ``serve``
(always stored redacted), their offline judgements, the scenarios harvested from them, and the
per-strategy counts of good and poor judged conversations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from ..errors import NotFoundError
from .tables import ConversationRow, ScenarioRow, StrategyOutcomeRow, fetch, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from ..core.domain import Scenario

_conversations: sa.Table = ConversationRow.__table__  # type: ignore[attr-defined]
_outcomes: sa.Table = StrategyOutcomeRow.__table__  # type: ignore[attr-defined]


@dataclass
class CapturedExchange:
    """One request ``serve`` answered, as the capture writer stores it (already redacted).

    ``previous_hash`` is the digest of the conversation before this request's new messages (the
    last exchange of the same conversation, if it passed through here); ``exchange_hash`` the
    digest of the conversation with this answer. ``strategies`` holds, per message, the refs of the
    strategies used to answer it."""

    domain_id: str
    messages: list[dict[str, Any]]
    strategies: list[list[str]]
    exchange_hash: str
    previous_hash: str | None
    conversation_key: str | None = None  # a conversation id the client sent
    meta: dict[str, Any] = field(default_factory=dict)
    redactions: dict[str, int] = field(default_factory=dict)


class ConversationStoreMixin:
    """Mixed into Store; uses ``self.engine`` and ``self.session()``."""

    engine: Engine

    if TYPE_CHECKING:

        def session(self) -> AbstractContextManager[Session]: ...

    # -- transcripts -------------------------------------------------------------------------
    def conversation_keys(self, domain_id: str, source: str) -> set[str]:
        """The external ids of the conversations of ``source`` already stored for a domain."""
        q = sa.select(_conversations.c.external_id).where(
            _conversations.c.domain_id == domain_id,
            _conversations.c.source == source,
            _conversations.c.external_id.is_not(None),
        )
        with self.engine.connect() as conn:
            return {str(k) for k in conn.execute(q).scalars()}

    def import_conversations(
        self, rows: Sequence[dict[str, Any]], scenarios: Sequence[Scenario | None]
    ) -> tuple[list[int], list[Scenario]]:
        """Store conversations (``ConversationRow`` fields) and the scenario extracted from each
        (or None), linked, in one transaction: all of them or nothing. Returns the conversation ids
        and the stored scenarios."""
        ids: list[int] = []
        stored: list[Scenario] = []
        with self.session() as s:
            for values, scenario in zip(rows, scenarios, strict=True):
                row = ConversationRow(**values)
                s.add(row)
                s.flush()
                assert row.id is not None
                ids.append(row.id)
                if scenario is not None:
                    # The scenario names the conversation it came from, and the conversation it.
                    scenario = scenario.model_copy(
                        update={"source": {**(scenario.source or {}), "id": row.id}}
                    )
                    srow = ScenarioRow.of(scenario)
                    s.add(srow)
                    s.flush()
                    row.scenario_id = srow.id
                    s.add(row)
                    stored.append(scenario.model_copy(update={"id": srow.id}))
            s.commit()
        return ids, stored

    # -- traffic -----------------------------------------------------------------------------
    def capture(self, batch: Sequence[CapturedExchange]) -> list[int]:
        """Store a batch of captured exchanges in one transaction. An exchange that continues a
        stored conversation (its ``previous_hash`` is that conversation's latest digest, or the
        client named the conversation) replaces that conversation's messages with the longer
        ones (each exchange holds the whole conversation, redacted as a whole); any other is a new
        conversation. Returns the conversation id of each exchange."""
        out: list[int] = []
        now = utcnow()
        with self.engine.begin() as conn:
            for x in batch:
                found = self._continued(conn, x)
                values = {
                    "messages": x.messages,
                    "strategies": x.strategies,
                    "exchange_hash": x.exchange_hash,
                    "updated_at": now,
                }
                if found is not None:
                    cid, meta, earlier = found
                    # Earlier answers keep the strategies recorded when they were given.
                    kept = [
                        list(e) if e else list(n) for e, n in zip(earlier, x.strategies[:-1], strict=False)
                    ]
                    values["strategies"] = [*kept, *x.strategies[len(kept) :]]
                    conn.execute(
                        sa.update(_conversations)
                        .where(_conversations.c.id == cid)
                        .values(**values, meta={**meta, **x.meta}, redactions=dict(x.redactions))
                    )
                    out.append(cid)
                    continue
                key = conn.execute(
                    sa.insert(_conversations),
                    {
                        **values,
                        "domain_id": x.domain_id,
                        "source": "traffic",
                        "external_id": x.conversation_key,
                        "meta": x.meta,
                        "redactions": dict(x.redactions),
                        "started_at": now,
                        "created_at": now,
                    },
                ).inserted_primary_key
                assert key is not None
                out.append(int(key[0]))
        return out

    @staticmethod
    def _continued(conn: Connection, x: CapturedExchange) -> tuple[int, dict[str, Any], list[Any]] | None:
        c = _conversations.c
        q = sa.select(c.id, c.meta, c.strategies).where(c.domain_id == x.domain_id, c.source == "traffic")
        if x.conversation_key is not None:
            q = q.where(c.external_id == x.conversation_key)
        elif x.previous_hash is not None:
            q = q.where(c.exchange_hash == x.previous_hash)
        else:
            return None
        row = conn.execute(q.order_by(c.id.desc()).limit(1)).first()
        return None if row is None else (int(row[0]), dict(row[1] or {}), list(row[2] or []))

    # -- reading -----------------------------------------------------------------------------
    def get_conversation(self, conversation_id: int) -> ConversationRow:
        with self.session() as s:
            return fetch(s, ConversationRow, conversation_id, f"no conversation {conversation_id}")

    def list_conversations(
        self,
        domain: str | None = None,
        source: str | None = None,
        *,
        judged: bool | None = None,
        below: float | None = None,
        harvested: bool | None = None,
        limit: int | None = None,
    ) -> list[ConversationRow]:
        q = select(ConversationRow).order_by(col(ConversationRow.id))
        if domain:
            q = q.where(ConversationRow.domain_id == domain)
        if source:
            q = q.where(ConversationRow.source == source)
        if judged is not None:
            q = q.where(
                col(ConversationRow.judged_at).is_not(None)
                if judged
                else col(ConversationRow.judged_at).is_(None)
            )
        if below is not None:
            q = q.where(col(ConversationRow.score) < below)
        if harvested is not None:
            q = q.where(
                col(ConversationRow.scenario_id).is_not(None)
                if harvested
                else col(ConversationRow.scenario_id).is_(None)
            )
        if limit is not None:
            q = q.limit(limit)
        with self.session() as s:
            return list(s.exec(q))

    # -- judging and harvesting --------------------------------------------------------------
    def judge_conversation(
        self,
        conversation_id: int,
        score: float,
        judgement: dict[str, Any],
        *,
        poor_below: float,
        count: bool = True,
    ) -> bool:
        """Store a conversation's judgement and count it for every strategy version that was in
        one of its prompts (good, or poor when ``score < poor_below``), in one transaction. A
        conversation judged before keeps its first judgement: returns False and counts nothing."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(_conversations.c.strategies).where(_conversations.c.id == conversation_id)
            ).first()
            if row is None:
                raise NotFoundError(f"no conversation {conversation_id}")
            done = conn.execute(
                sa.update(_conversations)
                .where(_conversations.c.id == conversation_id, _conversations.c.judged_at.is_(None))
                .values(score=score, judgement=judgement, judged_at=utcnow())
            )
            if done.rowcount != 1:
                return False
            if count:
                self._count_outcomes(conn, _versions_in(row[0] or []), score < poor_below)
        return True

    def count_outcomes(self, versions: Iterable[tuple[int, int]], *, poor: bool) -> None:
        """Add one good (or poor) judged conversation to each (strategy id, version)."""
        with self.engine.begin() as conn:
            self._count_outcomes(conn, versions, poor)

    def _count_outcomes(self, conn: Connection, versions: Iterable[tuple[int, int]], poor: bool) -> None:
        rows = [
            {
                "strategy_id": sid,
                "version": v,
                "good": 0 if poor else 1,
                "poor": 1 if poor else 0,
                "updated_at": utcnow(),
            }
            for sid, v in sorted(set(versions))
        ]
        if not rows:
            return
        known: set[int] = set(
            conn.execute(
                sa.select(sa.column("id"))
                .select_from(sa.table("strategies"))
                .where(sa.column("id").in_([r["strategy_id"] for r in rows]))
            ).scalars()
        )
        rows = [r for r in rows if r["strategy_id"] in known]  # a ref to a deleted strategy counts for none
        if not rows:
            return
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
            stmt = insert(_outcomes)
            stmt = stmt.on_conflict_do_update(
                index_elements=["strategy_id", "version"],
                set_={
                    "good": _outcomes.c.good + stmt.excluded.good,
                    "poor": _outcomes.c.poor + stmt.excluded.poor,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
            conn.execute(stmt, rows)
            return
        for r in rows:  # other databases: update, else insert
            done = conn.execute(
                sa.update(_outcomes)
                .where(_outcomes.c.strategy_id == r["strategy_id"], _outcomes.c.version == r["version"])
                .values(good=_outcomes.c.good + r["good"], poor=_outcomes.c.poor + r["poor"])
            )
            if done.rowcount == 0:
                conn.execute(sa.insert(_outcomes).values(**r))

    def strategy_outcomes(self, ids: Iterable[int] | None = None) -> dict[int, dict[int, tuple[int, int]]]:
        """strategy id -> {version: (good, poor)} from judged captured conversations."""
        q = sa.select(_outcomes.c.strategy_id, _outcomes.c.version, _outcomes.c.good, _outcomes.c.poor)
        if ids is not None:
            q = q.where(_outcomes.c.strategy_id.in_(list(ids)))
        out: dict[int, dict[int, tuple[int, int]]] = {}
        with self.engine.connect() as conn:
            for sid, v, good, poor in conn.execute(q):
                out.setdefault(int(sid), {})[int(v)] = (int(good), int(poor))
        return out

    def harvested_from(self, kind: str) -> set[int]:
        """Ids of the sources (dialogues, or conversations) that scenarios were harvested from."""
        scenarios: sa.Table = ScenarioRow.__table__  # type: ignore[attr-defined]
        q = sa.select(scenarios.c.spec).where(scenarios.c.origin == "harvested")
        out: set[int] = set()
        with self.engine.connect() as conn:
            for (spec,) in conn.execute(q):
                source = (spec or {}).get("source") or {}
                if source.get("kind") == kind and isinstance(source.get("id"), int):
                    out.add(source["id"])
        return out

    def add_harvested(
        self,
        scenario: Scenario,
        *,
        conversation_id: int | None = None,
        run_id: int | None = None,
        round: int | None = None,
    ) -> Scenario:
        """Store a harvested scenario (and link the conversation it came from) in one transaction."""
        with self.session() as s:
            srow = ScenarioRow.of(scenario, run_id=run_id, round=round)
            s.add(srow)
            s.flush()
            if conversation_id is not None:
                s.connection().execute(
                    sa.update(_conversations)
                    .where(_conversations.c.id == conversation_id)
                    .values(scenario_id=srow.id, updated_at=utcnow())
                )
            s.commit()
            return scenario.model_copy(update={"id": srow.id})


def _versions_in(strategies: Sequence[Any]) -> set[tuple[int, int]]:
    """(strategy id, version) of every ``strategy:ID@vN`` ref in a conversation's prompts."""
    out: set[tuple[int, int]] = set()
    for refs in strategies:
        for ref in refs or []:
            head, _, version = str(ref).partition("@v")
            kind, _, sid = head.partition(":")
            if kind == "strategy" and sid.isdigit() and version.isdigit():
                out.add((int(sid), int(version)))
    return out
