"""Re-ranking the lexical top hits by meaning: cosine similarity between the conversation's
embedding and each strategy's (cached by strategy id and version)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import ModelError
from ..models.embedding import Embedder
from ..store.search import SearchHit


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
