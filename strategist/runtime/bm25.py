"""BM25 in Python, for databases without SQLite FTS5 (PostgreSQL, SQLite builds lacking it).

Same formula and constants as FTS5's ``bm25()`` (k1 = 1.2, b = 0.75, IDF floored at 1e-6, both
columns weighted 1), so a ranking reads the same whichever way it was computed; the statistics
(number of documents, document frequencies, average length) come from the documents given.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..store.search import SearchHit, StrategyDoc
from .text import QueryTerm, index_terms

K1 = 1.2
B = 0.75
MIN_IDF = 1e-6


def idf(n_docs: int, df: int) -> float:
    """FTS5's IDF: log((N - n + 0.5) / (n + 0.5)), floored at a tiny positive number."""
    value = math.log((n_docs - df + 0.5) / (df + 0.5)) if n_docs else 0.0
    return value if value > 0 else MIN_IDF


@dataclass
class _Postings:
    docs: np.ndarray  # positions in the index's document list
    part: np.ndarray  # each document's term-frequency factor tf*(k1+1) / (tf + k1*(1-b+b*dl/avgdl))


class BM25Index:
    """An in-memory inverted index over strategies (trigger + guidance)."""

    def __init__(self, docs: Sequence[StrategyDoc]) -> None:
        self.docs = list(docs)
        self.ids = np.array([d.id for d in self.docs], dtype=np.int64)
        counts: list[Counter[str]] = []
        lengths = np.zeros(len(self.docs), dtype=np.float64)
        for i, d in enumerate(self.docs):
            terms = index_terms(d.trigger) + index_terms(d.guidance)
            counts.append(Counter(terms))
            lengths[i] = len(terms)
        avgdl = float(lengths.mean()) if len(self.docs) else 0.0
        norm = K1 * (1 - B + B * lengths / avgdl) if avgdl else np.full(len(self.docs), K1)
        raw: dict[str, tuple[list[int], list[float]]] = {}
        for i, c in enumerate(counts):
            for term, tf in c.items():
                entry = raw.setdefault(term, ([], []))
                entry[0].append(i)
                entry[1].append(tf * (K1 + 1) / (tf + norm[i]))
        self.postings = {
            t: _Postings(np.array(ix, dtype=np.int64), np.array(p, dtype=np.float64))
            for t, (ix, p) in raw.items()
        }

    def __len__(self) -> int:
        return len(self.docs)

    def search(self, terms: Sequence[QueryTerm], limit: int) -> list[SearchHit]:
        """The best ``limit`` documents matching any term, best first, ties by id."""
        n = len(self.docs)
        scores = np.zeros(n, dtype=np.float64)
        matched = np.zeros(n, dtype=bool)
        for t in terms:
            p = self.postings.get(t.stem)
            if p is None:
                continue
            # A document appears once per term's postings, so plain fancy-index addition is safe.
            scores[p.docs] += t.weight * idf(n, len(p.docs)) * p.part
            matched[p.docs] = True
        found = np.flatnonzero(matched)
        if not len(found) or limit <= 0:
            return []
        if len(found) > limit:
            # Keep every document tied with the limit-th score, so the id tie-break decides.
            kth = np.partition(scores[found], len(found) - limit)[len(found) - limit]
            found = found[scores[found] >= kth]
        order = np.lexsort((self.ids[found], -scores[found]))[:limit]
        return [SearchHit(self.docs[i], float(scores[i])) for i in found[order]]
