"""What a retrieval returns (``Retrieval``, ``Retrieved``) and how the ranked strategies that fit
a token budget are chosen. The rankers are in ``rankers.py``, the re-ranking by embeddings in
``rerank.py``; their public names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.dialogue import StrategyText
from ..core.text import CHARS_PER_TOKEN, estimate_tokens
from ..models.embedding import Embedder, FunctionEmbedder, LiteLLMEmbedder
from ..store.search import SearchHit, StrategyDoc
from .rankers import Fts5Ranker, PythonRanker, Ranker, default_ranker
from .rerank import Reranker, cosine
from .text import QueryTerm

__all__ = [
    "CHARS_PER_TOKEN",
    "Embedder",
    "Fts5Ranker",
    "FunctionEmbedder",
    "LiteLLMEmbedder",
    "PythonRanker",
    "Ranker",
    "Reranker",
    "Retrieval",
    "Retrieved",
    "TokenCounter",
    "cosine",
    "default_ranker",
    "estimate_tokens",
    "select_within_budget",
    "strategy_prompt_text",
]

TokenCounter = Callable[[str], int]


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
    release: str | None = None  # the release it ranked (None: the live approved set)

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
            "release": self.release,
            "query": {t.stem: t.weight for t in self.query},
        }


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
