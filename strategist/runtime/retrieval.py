"""Ranking strategies for a live conversation, and choosing the few that fit a token budget.

Two rankers behind one interface:

* ``Fts5Ranker`` (SQLite): BM25 from the FTS5 index (``bm25()``). To stay fast on large
  libraries it runs a *common-terms* query, as search engines do: a strategy must contain at
  least one of the query's selective (rarest) terms, and the common terms only add to the
  score of those. Where the selective terms find too few strategies, commoner terms are
  promoted until every term has been tried. When the query's terms are rare enough (always,
  in a library of a few hundred strategies) this is plain BM25 over all terms.
* ``PythonRanker`` (other databases): the same BM25 formula computed in Python over the
  domain's strategies, cached and refreshed when they change.

An optional ``Embedder`` (any litellm embedding model) re-ranks the lexical top hits.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..core.dialogue import StrategyText
from ..store.search import SearchHit, StrategyDoc
from .text import QueryTerm

if TYPE_CHECKING:
    from ..store import Store

TokenCounter = Callable[[str], int]

#: The stated estimate used when the student's tokenizer is unknown.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """About four characters a token (English text, common tokenizers)."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN)) if text else 0


def strategy_prompt_text(s: StrategyText) -> str:
    """A strategy as the default template shows it; what the token budget counts."""
    text = f"When: {s.trigger.strip()}\nDo: {s.guidance.strip()}"
    return text + (f'\nExample: "{s.example.strip()}"' if s.example.strip() else "")


@dataclass(frozen=True)
class Retrieved:
    """One strategy chosen for the prompt."""

    strategy: StrategyText
    score: float  # what it was ranked by: BM25, or cosine similarity after re-ranking
    bm25: float
    tokens: int  # its cost in the prompt (see strategy_prompt_text)
    status: str

    @property
    def ref(self) -> str:
        return self.strategy.ref

    def as_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "id": self.strategy.id,
            "version": self.strategy.version,
            "status": self.status,
            "score": round(self.score, 6),
            "bm25": round(self.bm25, 6),
            "tokens": self.tokens,
            "trigger": self.strategy.trigger,
            "guidance": self.strategy.guidance,
        }


@dataclass(frozen=True)
class Retrieval:
    """What one retrieval chose, and why."""

    domain: str
    strategies: list[Retrieved]
    query: list[QueryTerm]
    k: int
    budget: int | None
    include_pending: bool
    ranker: str

    @property
    def refs(self) -> list[str]:
        return [r.ref for r in self.strategies]

    @property
    def texts(self) -> list[StrategyText]:
        return [r.strategy for r in self.strategies]

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.strategies)

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "strategies": [r.as_dict() for r in self.strategies],
            "refs": self.refs,
            "tokens": self.tokens,
            "k": self.k,
            "budget": self.budget,
            "include_pending": self.include_pending,
            "ranker": self.ranker,
            "query": {t.stem: t.weight for t in self.query},
        }


class Ranker(Protocol):
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
        ...


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


class Fts5Ranker:
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

    def rank(
        self,
        terms: Sequence[QueryTerm],
        *,
        domain: str,
        statuses: Sequence[str],
        limit: int,
        enough: int | None = None,
    ) -> list[SearchHit]:
        if not terms or limit <= 0:
            return []
        enough = limit if enough is None else min(enough, limit)
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


class PythonRanker:
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

    def rank(
        self,
        terms: Sequence[QueryTerm],
        *,
        domain: str,
        statuses: Sequence[str],
        limit: int,
        enough: int | None = None,
    ) -> list[SearchHit]:
        if not terms:
            return []
        hits: list[SearchHit] = self._index(domain, statuses).search(terms, limit)
        return hits


def default_ranker(store: Store) -> Ranker:
    return Fts5Ranker(store) if store.has_search_index() else PythonRanker(store)


def select_within_budget(
    hits: Sequence[SearchHit], *, k: int, budget: int | None, count: TokenCounter, scores: Sequence[float]
) -> list[Retrieved]:
    """Walk the ranking and keep each strategy that still fits, until ``k`` are kept.

    A strategy too long for what is left of the budget is skipped, not a reason to stop: a
    shorter one further down may still fit.
    """
    chosen: list[Retrieved] = []
    left = budget
    for hit, score in zip(hits, scores, strict=True):
        if len(chosen) >= k:
            break
        text = _strategy_text(hit.doc)
        tokens = count(strategy_prompt_text(text))
        if left is not None and tokens > left:
            continue
        chosen.append(Retrieved(text, score, hit.score, tokens, hit.doc.status))
        if left is not None:
            left -= tokens
    return chosen


def _strategy_text(doc: StrategyDoc) -> StrategyText:
    return StrategyText(
        id=doc.id, version=doc.version, trigger=doc.trigger, guidance=doc.guidance, example=doc.example
    )


# -- optional re-ranking with embeddings --------------------------------------------------------
class Embedder(Protocol):
    """Turns texts into vectors: any litellm embedding model, or a function (tests)."""

    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class LiteLLMEmbedder:
    """Embeddings from any litellm embedding model (``openai/text-embedding-3-small``, ...)."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key_env: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.name = model
        self.api_base = api_base
        self.api_key_env = api_key_env
        self.timeout = timeout

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import os

        from ..errors import ModelError, ModelUnavailableError, one_line
        from ..models.base import get_field
        from ..models.litellm_model import import_litellm

        lt = import_litellm()
        kwargs: dict[str, Any] = {"model": self.name, "input": list(texts), "timeout": self.timeout}
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ModelUnavailableError(self.name, f"environment variable {self.api_key_env} is not set")
            kwargs["api_key"] = key
        elif self.api_base and self.name.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
            kwargs["api_key"] = "none"  # self-hosted servers want no key; the client wants one
        try:
            with warnings.catch_warnings():
                # litellm's response model warns about token-level vectors (handled below).
                warnings.simplefilter("ignore", UserWarning)
                resp = await lt.aembedding(**kwargs)
        except Exception as exc:
            raise ModelError(self.name, one_line(exc)) from exc
        data = sorted(get_field(resp, "data") or [], key=lambda d: int(get_field(d, "index", 0)))
        return [_pooled(get_field(d, "embedding")) for d in data]


def _pooled(embedding: Any) -> list[float]:
    """One vector per text. A server without pooling (llama.cpp serving a chat model) returns one
    vector per token: those are averaged."""
    if embedding and isinstance(embedding[0], list | tuple):
        import numpy as np

        return [float(x) for x in np.asarray(embedding, dtype=np.float64).mean(axis=0)]
    return [float(x) for x in embedding]


EmbedFunction = Callable[[list[str]], "list[list[float]] | Awaitable[list[list[float]]]"]


@dataclass
class FunctionEmbedder:
    """Embeddings from a function of the texts (sync or async); for tests and custom models."""

    fn: EmbedFunction
    name: str = "function"
    calls: list[list[str]] = field(default_factory=list)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        out = self.fn(list(texts))
        if inspect.isawaitable(out):
            out = await out
        return [list(map(float, v)) for v in out]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    if not na or not nb:
        return 0.0
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


class Reranker:
    """Re-orders the lexical top hits by cosine similarity to the conversation."""

    def __init__(self, embedder: Embedder, *, depth: int = 20, cache_size: int = 10_000) -> None:
        self.embedder = embedder
        self.depth = depth
        self.cache_size = cache_size
        self._vectors: dict[tuple[int, int], list[float]] = {}

    async def rerank(self, query: str, hits: Sequence[SearchHit]) -> tuple[list[SearchHit], list[float]]:
        top = list(hits[: self.depth])
        if not top or not query.strip():
            return list(hits), [h.score for h in hits]
        todo = [h for h in top if (h.doc.id, h.doc.version) not in self._vectors]
        vectors = await self.embedder.embed([query] + [f"{h.doc.trigger}\n{h.doc.guidance}" for h in todo])
        if len(vectors) != len(todo) + 1:
            from ..errors import ModelError

            raise ModelError(
                self.embedder.name, f"returned {len(vectors)} embeddings for {len(todo) + 1} texts"
            )
        if len(self._vectors) + len(todo) > self.cache_size:
            self._vectors.clear()
        for h, v in zip(todo, vectors[1:], strict=True):
            self._vectors[(h.doc.id, h.doc.version)] = v
        q = vectors[0]
        sims = {h.doc.id: cosine(q, self._vectors[(h.doc.id, h.doc.version)]) for h in top}
        top.sort(key=lambda h: (-sims[h.doc.id], -h.score, h.doc.id))
        return top, [sims[h.doc.id] for h in top]
