"""Words for retrieval: the tokenizer and stemmer of SQLite FTS5's ``porter unicode61
remove_diacritics 2``, re-done in Python, and the query built from a conversation.

The Python stemmer follows the behaviour of FTS5's ``porter`` tokenizer so that a word's index
term can be looked up (document frequencies) and so that the pure-Python ranking used without
FTS5 sees the same terms. tests/test_retrieval.py checks it against the real FTS5.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..core.text import message_text

_TOKEN = re.compile(r"[^\W_]+")

# Words that say nothing about which situation a conversation is in.
_STOPWORDS_TEXT = """
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing done down during each few for from further
get got had has have having he her here hers herself him himself his how i if in into is it its
itself just let me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them themselves
then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves hi hello hey please
thanks thank ok okay yes yeah oh um uh well dear sir madam
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def words(text: str) -> list[str]:
    """Lower-cased words without diacritics, split like FTS5's unicode61 tokenizer."""
    if not text.isascii():  # most text is: skip the slow folding
        text = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _TOKEN.findall(text.lower())


# -- the porter stemmer, as FTS5 runs it -------------------------------------------------------
_MAX_STEM_BYTES = 64


def _is_vowel(c: str, y_is_vowel: bool) -> bool:
    return c in "aeiou" or (y_is_vowel and c == "y")


def _consonant_mask(s: str) -> list[bool]:
    """True at consonants; 'y' is a vowel after a consonant."""
    out: list[bool] = []
    prev_cons = False
    for c in s:
        prev_cons = not _is_vowel(c, prev_cons)
        out.append(prev_cons)
    return out


def _measure(s: str) -> int:
    """Porter's m: the number of vowel-consonant sequences in ``s``."""
    m, seen_vowel = 0, False
    for cons in _consonant_mask(s):
        if not cons:
            seen_vowel = True
        elif seen_vowel:
            m, seen_vowel = m + 1, False
    return m


def _has_vowel(s: str) -> bool:
    return any(_is_vowel(c, i > 0) for i, c in enumerate(s))


def _cvc(s: str) -> bool:
    """Porter's *o: ends consonant-vowel-consonant, the last not w, x or y."""
    if not s or s[-1] in "wxy":
        return False
    mask = _consonant_mask(s)
    return len(mask) >= 3 and mask[-3:] == [True, False, True]


def _m_gt0(s: str) -> bool:
    return _measure(s) > 0


def _m_gt1(s: str) -> bool:
    return _measure(s) > 1


def _m_gt1_st(s: str) -> bool:
    return bool(s) and s[-1] in "st" and _measure(s) > 1


Rule = tuple[str, str, Callable[[str], bool]]

# Each step tries, among the suffixes the word ends with, only the first one listed (grouped by
# the suffix's next-to-last letter, as FTS5 does); its condition decides whether it applies.
_STEP2: tuple[Rule, ...] = tuple(
    (suffix, repl, _m_gt0)
    for suffix, repl in (
        ("ational", "ate"),
        ("tional", "tion"),
        ("enci", "ence"),
        ("anci", "ance"),
        ("izer", "ize"),
        ("logi", "log"),
        ("bli", "ble"),
        ("alli", "al"),
        ("entli", "ent"),
        ("eli", "e"),
        ("ousli", "ous"),
        ("ization", "ize"),
        ("ation", "ate"),
        ("ator", "ate"),
        ("alism", "al"),
        ("iveness", "ive"),
        ("fulness", "ful"),
        ("ousness", "ous"),
        ("aliti", "al"),
        ("iviti", "ive"),
        ("biliti", "ble"),
    )
)
_STEP3: tuple[Rule, ...] = tuple(
    (suffix, repl, _m_gt0)
    for suffix, repl in (
        ("ical", "ic"),
        ("ness", ""),
        ("icate", "ic"),
        ("iciti", "ic"),
        ("ful", ""),
        ("ative", ""),
        ("alize", "al"),
    )
)
_STEP4: tuple[Rule, ...] = tuple(
    (suffix, "", _m_gt1_st if suffix == "ion" else _m_gt1)
    for suffix in (
        "al",
        "ance",
        "ence",
        "er",
        "ic",
        "able",
        "ible",
        "ant",
        "ement",
        "ment",
        "ent",
        "ion",
        "ou",
        "ism",
        "ate",
        "iti",
        "ous",
        "ive",
        "ize",
    )
)


def _apply(word: str, rules: Sequence[Rule]) -> tuple[str, bool]:
    """Apply the first rule whose suffix the word ends with (a non-empty stem must remain)."""
    for suffix, repl, cond in rules:
        if len(word) > len(suffix) and word[-2] == suffix[-2] and word.endswith(suffix):
            stem = word[: -len(suffix)]
            return (stem + repl, True) if cond(stem) else (word, False)
    return word, False


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The index term FTS5's porter tokenizer makes of one lower-cased word."""
    n = len(word.encode("utf-8"))
    if n < 3 or n > _MAX_STEM_BYTES:
        return word
    w = word
    # Step 1a: plurals.
    if w.endswith("s"):
        if w.endswith("e", 0, -1):
            w = (
                w[:-2]
                if (w.endswith("sses") and len(w) > 4) or (w.endswith("ies") and len(w) > 3)
                else w[:-1]
            )
        elif not w.endswith("ss"):
            w = w[:-1]
    # Step 1b: -eed, -ed, -ing.
    removed = False
    if w.endswith("eed") and len(w) > 3:
        if _m_gt0(w[:-3]):
            w = w[:-1]
    elif w.endswith("ed") and len(w) > 2:
        if _has_vowel(w[:-2]):
            w, removed = w[:-2], True
    elif w.endswith("ing") and len(w) > 3 and _has_vowel(w[:-3]):
        w, removed = w[:-3], True
    if removed and len(w) >= 2:
        for suffix, repl in (("at", "ate"), ("bl", "ble"), ("iz", "ize")):
            if w.endswith(suffix) and len(w) > 2:
                w = w[:-2] + repl
                break
        else:
            last = w[-1]
            if not _is_vowel(last, False) and last not in "lsz" and last == w[-2]:
                w = w[:-1]
            elif _measure(w) == 1 and _cvc(w):
                w += "e"
    # Step 1c: y -> i after a vowel.
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    # Steps 2 to 4: derivational suffixes.
    if len(w) >= 2:
        w, _ = _apply(w, _STEP2)
        w, _ = _apply(w, _STEP3)
        w, _ = _apply(w, _STEP4)
    # Step 5: a final -e, a double l.
    if w.endswith("e"):
        base = w[:-1]
        m = _measure(base)
        if m > 1 or (m == 1 and not _cvc(base)):
            w = base
    if len(w) > 1 and w.endswith("ll") and _m_gt1(w[:-1]):
        w = w[:-1]
    return w


# -- the query -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueryTerm:
    """One term of a retrieval query."""

    word: str  # as the customer wrote it (lower-cased); FTS5 stems it again itself
    stem: str  # the index term
    weight: int  # how often the term counts in the score (query term frequency)


#: The customer's latest message counts this many times; earlier recent messages count once.
LAST_MESSAGE_WEIGHT = 2
#: How many earlier customer messages, and agent messages, the query looks back over.
CONTEXT_CUSTOMER_MESSAGES = 2
CONTEXT_AGENT_MESSAGES = 1
MAX_QUERY_TERMS = 24


def conversation_segments(messages: Iterable[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """(text, weight) of the recent messages the query is built from, newest customer message first.

    Customer messages are the ``user`` ones; the latest weighs most. The agent's latest message is
    context too (it often names the topic: "your order is back-ordered"). System prompts are not,
    nor are tool calls and their results.
    """
    # Tool results (role "tool") and the arguments of tool calls are left out: bulky records that
    # say little about the situation. An agent's step that only called tools has no words.
    msgs = [m for m in messages if m.get("role") in ("user", "assistant")]
    users = [message_text(m) for m in msgs if m.get("role") == "user"]
    agents = [t for m in msgs if m.get("role") == "assistant" and (t := message_text(m)).strip()]
    segments: list[tuple[str, int]] = []
    if users:
        segments.append((users[-1], LAST_MESSAGE_WEIGHT))
        segments += [(t, 1) for t in reversed(users[-1 - CONTEXT_CUSTOMER_MESSAGES : -1])]
    segments += [(t, 1) for t in reversed(agents[-CONTEXT_AGENT_MESSAGES:])] if agents else []
    return segments


def query_terms(segments: Iterable[tuple[str, int]], *, max_terms: int = MAX_QUERY_TERMS) -> list[QueryTerm]:
    """Distinct index terms of the segments, each with the largest weight it appears with.

    Order: heaviest first, then first appearance; at most ``max_terms`` terms.
    """
    found: dict[str, QueryTerm] = {}
    for text, weight in segments:
        for w in words(text):
            if w in STOPWORDS or (len(w) < 2 and not w.isdigit()):
                continue
            if w.isdigit() and len(w) > 3:  # order numbers, phone numbers: no strategy is about one
                continue
            s = stem(w)
            old = found.get(s)
            if old is None or weight > old.weight:
                found[s] = QueryTerm(old.word if old else w, s, weight)
    ordered = sorted(found.values(), key=lambda t: -t.weight)  # stable: keeps first appearance
    return ordered[:max_terms]


def index_terms(text: str) -> list[str]:
    """Every index term of a document, in order (stopwords included, as FTS5 indexes them)."""
    return [stem(w) for w in words(text)]
