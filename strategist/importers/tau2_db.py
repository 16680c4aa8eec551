"""A tau2-bench ``db.json`` as facts a simulated customer knows: the customer a task is about (found
by the id, email or full name the task mentions, in its instructions or in its expected actions'
arguments) and the records that belong to them, each one line of text.

Nothing here knows one domain's collection or field names: people are the records of collections
whose records mostly carry an email address; a person's records are those that point at their id,
or that their own lists of ids name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def clean(text: str | None) -> str:
    """``text`` with its white space folded to single spaces."""
    return " ".join((text or "").split())


def meaningful(text: str | None) -> bool:
    """tau2 writes 'None' or '.' where a field has nothing to say."""
    t = clean(text).strip(" .").lower()
    return bool(re.search(r"[a-z0-9]", t)) and t not in ("none", "null", "n/a")


def _records(value: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, record) pairs of a collection: an object of objects or an array of objects."""
    if isinstance(value, dict):
        for k, rec in value.items():
            if isinstance(rec, dict):
                yield str(k), rec
    elif isinstance(value, list):
        for i, rec in enumerate(value):
            if isinstance(rec, dict):
                key = next(
                    (
                        str(v)
                        for k, v in rec.items()
                        if (k == "id" or k.endswith("_id"))
                        and isinstance(v, str | int)
                        and not isinstance(v, bool)
                    ),
                    f"#{i}",
                )
                yield key, rec


def _emails(rec: dict[str, Any]) -> list[str]:
    out = []
    for v in rec.values():
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, str) and _EMAIL.match(item):
                out.append(item)
    return out


def _names(rec: dict[str, Any]) -> list[str]:
    names = []
    for k, v in rec.items():
        if k.lower() == "name" or k.lower().endswith("name"):
            if isinstance(v, dict):
                v = " ".join(str(x) for x in v.values() if isinstance(x, str))
            if isinstance(v, str):
                names.append(clean(v))
    first, last = rec.get("first_name"), rec.get("last_name")
    if isinstance(first, str) and isinstance(last, str):
        names.append(clean(f"{first} {last}"))
    return [n for n in names if len(n.split()) >= 2]  # one word alone matches too much


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, str | int) and not isinstance(value, bool):
        yield str(value)


def _mentions(haystack: str, needle: str) -> bool:
    """``needle`` occurs in ``haystack`` (both lower case) as a whole token."""
    if not needle:
        return False
    start = 0
    while (i := haystack.find(needle, start)) >= 0:
        before = haystack[i - 1] if i else " "
        j = i + len(needle)
        after = haystack[j] if j < len(haystack) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        start = i + 1
    return False


def _own_ids(key: str, rec: dict[str, Any]) -> set[str]:
    ids = {key}
    for k, v in rec.items():
        if (k == "id" or k.endswith("_id")) and isinstance(v, str | int) and str(v) == key:
            ids.add(str(v))
    return ids


@dataclass
class Person:
    collection: str
    key: str
    record: dict[str, Any]
    strong: list[str]  # ids and emails, lower case
    names: list[str]  # lower case


class CustomerDb:
    """A tau2 db.json: collections of records. People are the records of collections whose records
    mostly carry an email address; a person's records are those that point at their id, or that
    their own lists of ids name."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.collections = {name: list(_records(v)) for name, v in data.items()}
        self.collections = {k: v for k, v in self.collections.items() if v}
        self.people: list[Person] = []
        self.person_collections: set[str] = set()
        for name, recs in self.collections.items():
            with_email = [(k, r) for k, r in recs if _emails(r)]
            if len(with_email) * 2 >= len(recs):
                self.person_collections.add(name)
                for k, r in recs:
                    strong = sorted({i.lower() for i in _own_ids(k, r)} | {e.lower() for e in _emails(r)})
                    self.people.append(Person(name, k, r, strong, [n.lower() for n in _names(r)]))

    def find(self, text: str) -> Person | None:
        """The one person ``text`` (lower case) is about, or None when nobody or several tie."""
        scored = []
        for p in self.people:
            strong = any(_mentions(text, s) for s in p.strong)
            named = any(_mentions(text, n) for n in p.names)
            if strong or named:
                extra = sum(
                    1 for leaf in set(_leaves(p.record)) if len(leaf) >= 4 and _mentions(text, leaf.lower())
                )
                scored.append(((strong, named, extra), p))
        if not scored:
            return None
        scored.sort(key=lambda sp: sp[0], reverse=True)
        if len(scored) > 1 and scored[0][0] == scored[1][0]:
            return None
        return scored[0][1]

    def owned(self, person: Person) -> list[tuple[str, str, dict[str, Any], set[str]]]:
        """(collection, key, record, fields linking it to the person) for the person's records."""
        ids = _own_ids(person.key, person.record)
        listed = {
            str(x)
            for v in person.record.values()
            if isinstance(v, list)
            for x in v
            if isinstance(x, str | int) and not isinstance(x, bool)
        }
        out = []
        for name, recs in self.collections.items():
            if name in self.person_collections:
                continue
            for key, rec in recs:
                links = {
                    k
                    for k, v in rec.items()
                    if isinstance(v, str | int) and not isinstance(v, bool) and str(v) in ids
                }
                if links or key in listed:
                    out.append((name, key, rec, links))
        return out

    def customer_facts(
        self, texts: Sequence[str | None], arguments: Sequence[Mapping[str, Any]], unknown: str | None
    ) -> list[str] | None:
        """The facts the customer a task is about knows: their own record and the records that
        belong to them, without the fields ``unknown`` (tau2's unknown_info) says they do not
        know. The customer is found by the ids, emails and names in ``texts`` (the instructions)
        and ``arguments`` (the expected actions'); None when it is nobody, or unclear who."""
        mentions = [clean(t) for t in texts if t] + [" ".join(_leaves(a)) for a in arguments]
        person = self.find("\n".join(mentions).lower())
        if person is None:
            return None
        hidden = clean(unknown).lower()
        facts = [_record_fact(person.collection, person.key, person.record, set(), hidden)]
        for name, key, rec, links in self.owned(person):
            facts.append(_record_fact(name, key, rec, links, hidden))
        return facts


def _render(value: Any, nested: bool = False) -> str:
    if isinstance(value, dict):
        parts = [f"{k}: {_render(v, True)}" for k, v in value.items() if not _empty(v)]
        return f"({', '.join(parts)})" if nested else "; ".join(parts)
    if isinstance(value, list):
        return "[" + "; ".join(_render(v, True) for v in value if not _empty(v)) + "]"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return clean(str(value))


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _fields_named(fields: list[str], text: str) -> set[str]:
    """The fields whose names (``user_id`` as "user id") ``text`` mentions. A name right after
    another one qualifies it and is not counted: "email address" names ``email``, not ``address``."""
    spans = []
    for f in fields:
        m = re.search(rf"\b{re.escape(f.replace('_', ' ').lower())}\b", text)
        if m:
            spans.append((m.start(), m.end(), f))
    spans.sort()
    out: set[str] = set()
    for i, (start, _end, f) in enumerate(spans):
        if any(text[e:start].strip() == "" and e <= start for _s, e, _f in spans[:i]):
            continue
        out.add(f)
    return out


def _record_fact(collection: str, key: str, rec: dict[str, Any], drop: set[str], unknown: str) -> str:
    """One known fact: the record without the fields the customer does not know (per unknown_info)
    and without the fields that only link it to the customer."""
    hidden = _fields_named(list(rec), unknown) if meaningful(unknown) else set()
    kept = {k: v for k, v in rec.items() if k not in drop | hidden}
    show_key = not any(str(rec[k]) == key for k in hidden if isinstance(rec[k], str | int))
    head = f"Your record in {collection}" + (f" ({key})" if show_key else "")
    return f"{head}: {_render(kept)}"
