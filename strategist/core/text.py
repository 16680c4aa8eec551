"""Cheap text similarity, used to drop near-duplicate scenarios and merge similar strategies."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

_WORD = re.compile(r"[a-z0-9]+")
# Words that carry no meaning for telling two situations apart.
_STOP = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "so",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "will",
        "with",
        "you",
        "your",
    }
)


def words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP)


def jaccard(a: str, b: str) -> float:
    wa, wb = words(a), words(b)
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def most_similar(text: str, others: Iterable[tuple[int, str]]) -> tuple[int | None, float]:
    """(id, similarity) of the most similar of ``others``; (None, 0.0) if there are none."""
    best_id, best = None, 0.0
    for other_id, other in others:
        s = jaccard(text, other)
        if s > best:
            best_id, best = other_id, s
    return best_id, best


#: The stated estimate used where a model's tokenizer is unknown (English text, common tokenizers).
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """About four characters a token."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN)) if text else 0


def short(text: str, n: int = 60) -> str:
    """``text`` on one line, cut to at most ``n`` characters (at a word break where there is one)."""
    text = " ".join(text.split())
    if len(text) <= n:
        return text
    cut = text[: n - 1]
    if " " in cut[n // 2 :]:
        cut = cut.rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def short_quote(text: str, n: int = 300) -> str:
    """``text`` on one line cut to whole sentences of at most ``n`` characters in all (the first
    sentence cut at a word if it alone is longer): a quote that reads as something said."""
    text = " ".join(text.split())
    if len(text) <= n:
        return text
    sentences = re.split(r"(?<=[.!?])\s+", text)
    out = ""
    for sentence in sentences:
        if len(out) + len(sentence) + 1 > n:
            break
        out = f"{out} {sentence}".strip()
    return out or short(text, n)


def message_text(message: Mapping[str, Any]) -> str:
    """The text of an OpenAI-style message; ``content`` may be a string or a list of parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(str(p) for p in parts)
    return str(content)
