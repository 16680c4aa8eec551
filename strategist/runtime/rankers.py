"""The two rankers behind one interface, both BM25 over a strategy's trigger and guidance:

* ``Fts5Ranker`` (SQLite): BM25 from the FTS5 index (``bm25()``). To stay fast on large
  libraries it runs a *common-terms* query, as search engines do: a strategy must contain at
  least one of the query's selective (rarest) terms, and the common terms only add to the
  score of those. Where the selective terms find too few strategies, commoner terms are
  promoted until every term has been tried. When the query's terms are rare enough (always,
  in a library of a few hundred strategies) this is plain BM25 over all terms.
* ``PythonRanker`` (other databases): the same BM25 formula computed in Python over the
  domain's strategies (``bm25.py``), cached and refreshed when they change.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..store.search import SearchHit
from .text import QueryTerm

if TYPE_CHECKING:
    from ..store import Store


class Ranker(abc.ABC):
    """Ranks a domain's strategies for a query; ``name`` is what a Retrieval reports."""

    name: str

    def rank(
        self,
        terms: Sequence[QueryTerm],
        *,
        domain: str,
        statuses: Sequence[str],
        limit: int,
        enough: int | None = None,
    ) -> list[SearchHit]:
        """At most ``limit`` hits, best first, ties broken by strategy id. A ranker that prunes
        for speed keeps looking until it has ``enough`` (default: ``limit``) or has tried all."""
        if not terms or limit <= 0:
            return []
        return self._rank(terms, domain, statuses, limit, limit if enough is None else min(enough, limit))

    def size(self, domain: str, statuses: Sequence[str]) -> int:
        """How many strategies of ``domain`` this ranker ranks."""
        return self.store.count_strategies(domain, statuses)

    @property
    def release(self) -> str | None:
        """The release whose strategies it ranks (None: the live library)."""
        return None

    store: Store

    @abc.abstractmethod
    def _rank(
        self, terms: Sequence[QueryTerm], domain: str, statuses: Sequence[str], limit: int, enough: int
    ) -> list[SearchHit]:
        """``rank`` for a query with terms and a positive limit."""


class _TtlCache:
    """Values that may be slightly stale: they only steer how a query is run, never a score."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        hit = self._data.get(key)
        if hit is None or time.monotonic() - hit[0] > self.ttl:
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._data) > 100_000:
            self._data.clear()
        self._data[key] = (time.monotonic(), value)


def _phrases(terms: Sequence[QueryTerm]) -> str:
    # Repeating a phrase makes FTS5's bm25() count it again: that is how a term's weight applies.
    # Words are letters and digits only (see text.words), so quoting needs no escaping.
    return " OR ".join(" OR ".join([f'"{t.word}"'] * t.weight) for t in terms)


class Fts5Ranker(Ranker):
    """BM25 by SQLite FTS5, with a common-terms query for speed on large libraries.

    FTS5 spends a few microseconds on every matching row for every query phrase, so a query
    costs about (rows matched) x (phrases). Each query therefore has a *condition* that few
    strategies meet, and the remaining terms (the rarest ``MAX_COMMON_TERMS``) only add their
    share of BM25 to those. Conditions are tried from the narrowest until ``enough`` strategies
    are found:

    1. when even the rarest term is in more than ``ROW_BUDGET`` strategies: all of the two or
       three rarest terms (about ``ROW_BUDGET`` strategies expected), then the two rarest;
    2. any of the rarest terms whose strategies add up to ``ROW_BUDGET`` (at least one term),
       then the same with a budget ``PROMOTION_FACTOR`` times larger, until every term is in.

    When the query's terms are rare enough (always, in a library of a few hundred strategies)
    the first condition holds every term and this is plain BM25.
    """

    name = "fts5"

    ROW_BUDGET = 128
    PROMOTION_FACTOR = 4
    MAX_COMMON_TERMS = 4
    MAX_AND_TERMS = 3

    def __init__(self, store: Store, *, stats_ttl: float = 30.0) -> None:
        self.store = store
        self._df = _TtlCache(stats_ttl)
        self._size = _TtlCache(stats_ttl)

    def _stats(self, terms: Sequence[QueryTerm]) -> tuple[int, dict[str, int]]:
        size = self._size.get("n")
        if size is None:
            size = self.store.search_index_size()
            self._size.put("n", size)
        df: dict[str, int] = {}
        missing = []
        for t in terms:
            cached = self._df.get(t.stem)
            if cached is None:
                missing.append(t.stem)
            else:
                df[t.stem] = cached
        if missing:
            found = self.store.term_document_counts(missing)
            for s in missing:
                df[s] = found.get(s, 0)
                if df[s]:  # absent words are looked up again next time: one may be added any moment
                    self._df.put(s, df[s])
        return size, df

    def _conditions(
        self, ordered: Sequence[QueryTerm], df: dict[str, int], size: int
    ) -> list[tuple[str, int]]:
        """(``AND`` or ``OR``, number of rarest terms it joins), narrowest first."""
        plan: list[tuple[str, int]] = []
        if df[ordered[0].stem] > self.ROW_BUDGET and len(ordered) > 1:
            expected, m = float(size), 0
            for t in ordered[: self.MAX_AND_TERMS]:
                expected *= df[t.stem] / max(size, 1)
                m += 1
                if m >= 2 and expected <= self.ROW_BUDGET:
                    break
            plan += [("AND", n) for n in range(m, 1, -1)]
        budget, n = self.ROW_BUDGET, 0
        while n < len(ordered):
            rows, grown = 0, 0
            for t in ordered:
                if grown and rows + df[t.stem] > budget:
                    break
                rows += df[t.stem]
                grown += 1
            n = max(grown, n + 1)  # each round lets in at least one more term
            plan.append(("OR", n))
            budget = max(budget * self.PROMOTION_FACTOR, sum(df[t.stem] for t in ordered[: n + 1]))
        return plan

    def _rank(
        self, terms: Sequence[QueryTerm], domain: str, statuses: Sequence[str], limit: int, enough: int
    ) -> list[SearchHit]:
        size, df = self._stats(terms)
        # Rarest first. A word no strategy contains is left out: it cannot match, yet every
        # phrase costs FTS5 time. (The stemmer here agrees with FTS5's; the tests check it.)
        ordered = sorted((t for t in terms if df[t.stem]), key=lambda t: (df[t.stem], t.stem))
        hits: list[SearchHit] = []
        for how, n in self._conditions(ordered, df, size) if ordered else []:
            # In half the strategies or more, FTS5 floors a term's IDF at 1e-6: as a common term
            # it would add nothing to a score, yet computing its IDF reads its whole posting list.
            common = [t for t in ordered[n:] if 2 * df[t.stem] < size][: self.MAX_COMMON_TERMS]
            hits = self._common_terms_query(ordered[:n], how, common, domain, statuses, limit)
            if len(hits) >= enough:
                break
        return hits

    def _common_terms_query(
        self,
        selective: Sequence[QueryTerm],
        how: str,
        common: Sequence[QueryTerm],
        domain: str,
        statuses: Sequence[str],
        limit: int,
    ) -> list[SearchHit]:
        q1 = f" {how} ".join(f"({_phrases([t])})" for t in selective)
        # FTS5 sums bm25() over every phrase present in a row, so q2 gives the BM25 of all terms
        # for rows that also contain a common term; the other rows keep their score from q1.
        # Each query returns its own best `limit`, so together they hold the overall best.
        queries = [q1, f"({q1}) AND ({_phrases(common)})"] if common else [q1]
        hits: dict[int, SearchHit] = {}
        for found in self.store.search_strategies(queries, domain=domain, statuses=statuses, limit=limit):
            hits.update((h.doc.id, h) for h in found)
        return sorted(hits.values(), key=lambda h: (-h.score, h.doc.id))[:limit]


class PythonRanker(Ranker):
    """BM25 computed in Python over the domain's strategies; the index is rebuilt when they change."""

    name = "python"

    def __init__(self, store: Store, *, check_every: float = 2.0) -> None:
        self.store = store
        self.check_every = check_every
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, tuple[str, ...]], tuple[float, tuple[Any, ...], Any]] = {}

    def _index(self, domain: str, statuses: Sequence[str]) -> Any:
        from .bm25 import BM25Index

        key = (domain, tuple(sorted(statuses)))
        now = time.monotonic()
        with self._lock:
            cached = self._indexes.get(key)
            if cached and now - cached[0] < self.check_every:
                return cached[2]
            signature = self.store.ranking_signature(domain, statuses)
            if cached and cached[1] == signature:
                self._indexes[key] = (now, signature, cached[2])
                return cached[2]
            index = BM25Index(self.store.ranking_corpus(domain, statuses))
            self._indexes[key] = (now, signature, index)
            return index

    def _rank(
        self, terms: Sequence[QueryTerm], domain: str, statuses: Sequence[str], limit: int, enough: int
    ) -> list[SearchHit]:
        hits: list[SearchHit] = self._index(domain, statuses).search(terms, limit)
        return hits


class ReleaseRanker(Ranker):
    """BM25 (computed in Python) over exactly the strategy versions a release pinned: their words as
    they were when the release was made, whatever has been edited, approved or retired since.

    ``ref`` is a label (``production``) or a release name. A label is looked up again every
    ``check_every`` seconds: once someone promotes or rolls it back, the next retrievals use the
    release it points at now; until then, the same strategies."""

    name = "release"

    def __init__(self, store: Store, ref: str, *, check_every: float = 2.0) -> None:
        self.store = store
        self.ref = ref
        self.check_every = check_every
        self._lock = threading.Lock()
        self._checked = 0.0
        self._release: tuple[int, str] | None = None
        self._indexes: dict[str, Any] = {}
        self._current()  # an unknown label or release fails here, at start-up

    def _current(self) -> tuple[int, str]:
        now = time.monotonic()
        with self._lock:
            if self._release is None or now - self._checked >= self.check_every:
                row, _label = self.store.resolve_release(self.ref)
                assert row.id is not None
                if self._release is None or self._release[0] != row.id:
                    self._release = (row.id, row.name)
                    self._indexes = {}
                self._checked = now
            return self._release

    def _index(self, domain: str) -> Any:
        from ..store.search import StrategyDoc
        from .bm25 import BM25Index

        release_id, _ = self._current()
        with self._lock:
            index = self._indexes.get(domain)
            if index is None:
                docs = [
                    StrategyDoc(s.strategy_id, s.version, "approved", s.trigger, s.guidance, s.example)
                    for s in self.store.released_strategies(release_id, domain)
                ]
                index = self._indexes[domain] = BM25Index(docs)
            return index

    @property
    def release(self) -> str | None:
        return self._current()[1]

    def size(self, domain: str, statuses: Sequence[str]) -> int:
        return len(self._index(domain))

    def _rank(
        self, terms: Sequence[QueryTerm], domain: str, statuses: Sequence[str], limit: int, enough: int
    ) -> list[SearchHit]:
        hits: list[SearchHit] = self._index(domain).search(terms, limit)
        return hits


def default_ranker(store: Store) -> Ranker:
    return Fts5Ranker(store) if store.has_search_index() else PythonRanker(store)
