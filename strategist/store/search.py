"""Store methods for run-time retrieval (owned by the inference work): the SQLite FTS5 index of
strategies (created by migration m002), the rows ranked without it, and usage counters.

The ranking logic lives in strategist/runtime/retrieval.py; these methods only run queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

_strategies = sa.table(
    "strategies",
    sa.column("id"),
    sa.column("domain_id"),
    sa.column("status"),
    sa.column("version"),
    sa.column("trigger"),
    sa.column("guidance"),
    sa.column("example"),
    sa.column("times_retrieved"),
    sa.column("updated_at"),
)
_COLUMNS = (
    _strategies.c.id,
    _strategies.c.version,
    _strategies.c.status,
    _strategies.c.trigger,
    _strategies.c.guidance,
    _strategies.c.example,
)


@dataclass(frozen=True)
class StrategyDoc:
    """What ranking needs of one strategy."""

    id: int
    version: int
    status: str
    trigger: str
    guidance: str
    example: str


@dataclass(frozen=True)
class SearchHit:
    doc: StrategyDoc
    score: float  # BM25, higher is better (FTS5's bm25() negated)


def _raw(conn: Connection, sql: str, params: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Run ``sql`` once per parameter tuple on the DB-API cursor itself: retrieval runs on every
    bot turn, and SQLAlchemy's statement and result handling would cost about as much as the
    search."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        return [cursor.execute(sql, p).fetchall() for p in params]
    finally:
        cursor.close()


def _doc(row: Any) -> StrategyDoc:
    return StrategyDoc(int(row[0]), int(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5] or ""))


class SearchStoreMixin:
    """Mixed into Store; uses ``self.engine`` and ``self.session()``."""

    engine: Engine
    _fts: bool | None = None

    def has_search_index(self) -> bool:
        """Whether the FTS5 index exists (SQLite with FTS5, migrations applied)."""
        if self._fts is None:
            if self.engine.dialect.name != "sqlite":
                self._fts = False
            else:
                with self.engine.connect() as conn:
                    self._fts = sa.inspect(conn).has_table("strategies_fts")
        return self._fts

    def search_index_size(self) -> int:
        """How many strategies the FTS5 index holds (every domain and status)."""
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM strategies").scalar_one())

    def term_document_counts(self, terms: Sequence[str]) -> dict[str, int]:
        """Index term -> number of strategies containing it (absent terms are left out)."""
        if not terms:
            return {}
        marks = ",".join("?" * len(terms))
        sql = f"SELECT term, doc FROM strategies_fts_vocab WHERE term IN ({marks})"
        with self.engine.connect() as conn:
            rows = _raw(conn, sql, [tuple(terms)])[0]
        return {str(t): int(n) for t, n in rows}

    def search_strategies(
        self, matches: Sequence[str], *, domain: str, statuses: Sequence[str], limit: int
    ) -> list[list[SearchHit]]:
        """For each FTS5 expression in ``matches``: the strategies of ``domain`` with one of
        ``statuses`` that match it, best BM25 first, ties by id, at most ``limit``."""
        marks = ",".join("?" * len(statuses))
        # CROSS JOIN keeps the full-text scan as the outer loop: the other order would run the
        # MATCH once per strategy of the domain.
        sql = (
            'SELECT s.id, s.version, s.status, s."trigger", s.guidance, s.example, '
            "bm25(strategies_fts) AS rank "
            "FROM strategies_fts CROSS JOIN strategies AS s ON s.id = strategies_fts.rowid "
            f"WHERE strategies_fts MATCH ? AND s.domain_id = ? AND s.status IN ({marks}) "
            "ORDER BY rank, s.id LIMIT ?"
        )
        with self.engine.connect() as conn:
            results = _raw(conn, sql, [(match, domain, *statuses, limit) for match in matches])
        return [[SearchHit(_doc(r), -float(r[6])) for r in rows] for rows in results]

    def search_index_segments(self) -> int:
        """How many segments the FTS5 index is split into (each one a query has to visit)."""
        with self.engine.connect() as conn:
            return int(
                conn.exec_driver_sql("SELECT count(DISTINCT segid) FROM strategies_fts_idx").scalar_one()
            )

    def optimize_search_index(self) -> None:
        """Merge the FTS5 index into one segment: queries get two to three times faster.

        Every transaction that writes strategies adds a small segment; FTS5 merges them only
        lazily. Takes about a second per 100k strategies.
        """
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO strategies_fts(strategies_fts) VALUES ('optimize')")

    def ranking_corpus(self, domain: str, statuses: Sequence[str]) -> list[StrategyDoc]:
        """Every strategy of ``domain`` with one of ``statuses``, by id (for ranking in Python)."""
        q = (
            sa.select(*_COLUMNS)
            .where(_strategies.c.domain_id == domain, _strategies.c.status.in_(list(statuses)))
            .order_by(_strategies.c.id)
        )
        with self.engine.connect() as conn:
            return [_doc(r) for r in conn.execute(q)]

    def ranking_signature(self, domain: str, statuses: Sequence[str]) -> tuple[Any, ...]:
        """Changes whenever the set of rankable strategies or their versions change."""
        q = sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(_strategies.c.version), 0),
            sa.func.coalesce(sa.func.sum(_strategies.c.id), 0),
            sa.func.max(_strategies.c.updated_at),
        ).where(_strategies.c.domain_id == domain, _strategies.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            return tuple(conn.execute(q).one())

    def add_retrieval_counts(self, counts: Mapping[int, int]) -> None:
        """Add to ``strategies.times_retrieved`` in one transaction (usage counters are batched)."""
        params = [{"sid": sid, "n": n} for sid, n in sorted(counts.items()) if n]
        if not params:
            return
        stmt = (
            sa.update(_strategies)
            .where(_strategies.c.id == sa.bindparam("sid"))
            .values(times_retrieved=_strategies.c.times_retrieved + sa.bindparam("n"))
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, params)
