"""Import a tau2-bench domain folder as a strategist domain and its scenarios.

The folder holds ``policy.md`` and ``tasks.json`` and ``split_tasks.json``, and optionally
``db.json``. Only tau2's documented task format is relied on (``user_scenario.persona`` and
``.instructions``, ``evaluation_criteria.actions``, ``.communicate_info``, ``.nl_assertions``,
``description.purpose``), never one domain's tool or record names, so any tau2 domain imports:

- persona (a free-text string in tau2) -> the value of the one persona dimension ``style``
  ("default" for tasks without one);
- ``reason_for_call`` -> the goal (plus ``task_instructions``, how the customer behaves), the
  title and the opening line (its first sentence, turned into the first person);
- ``known_info`` -> a known fact; ``unknown_info`` -> a hidden fact (what the customer says only
  when asked, e.g. that they do not remember their email);
- the first state-changing expected action (a name not starting with a look-up verb such as
  get/find/search/list/calculate) -> the intent; only look-ups -> ``inquiry``; none -> ``general``;
- ``communicate_info`` -> must-say checks (literal, case-insensitive);
- ``nl_assertions`` -> rubric items for the judge;
- ``split_tasks.json`` "train" / "test" -> the split; a task in neither -> ``dev`` (held out from
  growing, yet not part of the official test set);
- ``db.json``: the customer's own record (found by the id, email or full name the task mentions,
  in its instructions or in its expected actions' arguments) and the records that belong to it
  -> known facts, without the fields ``unknown_info`` says the customer does not know.

Every problem is one ``InputError`` naming the file and the field; nothing is returned half-made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..core.domain import Check, Difficulty, Domain, Intent, Scenario, Split, SuccessCriteria
from ..errors import InputError, describe_validation_error

REQUIRED_FILES = ("policy.md", "tasks.json", "split_tasks.json")
DB_FILE = "db.json"
PERSONA_DIMENSION = "style"
DEFAULT_PERSONA = "default"
DEFAULT_MAX_TURNS = 10
# A tool whose name starts with one of these verbs only reads; the first other tool is the intent.
LOOKUP_VERBS = frozenset(
    {"get", "find", "search", "list", "lookup", "look", "calculate", "check", "read", "show", "view"}
    | {"query", "fetch", "retrieve", "think"}
)
DOMAIN_RUBRIC = "The agent acts within the policy and does not promise anything the policy forbids."
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class Tau2Import:
    domain: Domain
    scenarios: list[Scenario]
    customers_found: list[str] = field(default_factory=list)  # task ids with db.json facts
    used_db: bool = False

    def split_counts(self) -> dict[str, int]:
        counts = {"train": 0, "dev": 0, "test": 0}
        for s in self.scenarios:
            counts[s.split] += 1
        return counts


# -- reading and checking ------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), "", f"cannot read: {exc}") from None


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            str(path), f"line {exc.lineno}", f"invalid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    except RecursionError:
        raise InputError(str(path), "", "invalid JSON: nested too deeply") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


class _Reader:
    """Type checks on parsed JSON that raise an InputError naming this file and the field."""

    def __init__(self, path: Path) -> None:
        self.source = str(path)

    def fail(self, where: str, problem: str) -> InputError:
        return InputError(self.source, where or "(top level)", problem)

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {_kind(value)}")
        return value

    def req(self, parent: dict[str, Any], key: str, where: str) -> Any:
        if parent.get(key) is None:
            raise self.fail(_join(where, key), "missing")
        return parent[key]

    def opt_obj(self, parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        value = parent.get(key)
        return {} if value is None else self.obj(value, _join(where, key))

    def opt_str(self, parent: dict[str, Any], key: str, where: str) -> str | None:
        value = parent.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(_join(where, key), f"expected a string, got {_kind(value)}")
        return value

    def text(self, parent: dict[str, Any], key: str, where: str) -> str:
        value = self.req(parent, key, where)
        if not isinstance(value, str):
            raise self.fail(_join(where, key), f"expected a string, got {_kind(value)}")
        if not value.strip():
            raise self.fail(_join(where, key), "must not be empty")
        return value

    def ident(self, value: Any, where: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(where, f"expected a task id (string or integer), got {_kind(value)}")
        return str(value)

    def texts(self, parent: dict[str, Any], key: str, where: str) -> list[str]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(_join(where, key), f"expected an array of strings, got {_kind(value)}")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"{_join(where, key)}[{i}]", f"expected a string, got {_kind(item)}")
            if not item.strip():
                raise self.fail(f"{_join(where, key)}[{i}]", "must not be empty")
            out.append(" ".join(item.split()))
        return out

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected an array, got {_kind(value)}")
        return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


@dataclass
class _Action:
    name: str
    by_user: bool
    arguments: dict[str, Any]


@dataclass
class _Task:
    index: int
    id: str
    persona: str | None
    reason: str
    known: str | None
    unknown: str | None
    behaviour: str | None
    purpose: str | None
    actions: list[_Action]
    communicate: list[str]
    assertions: list[str]


def _parse_task(r: _Reader, raw: Any, i: int) -> _Task:
    where = f"[{i}]"
    task = r.obj(raw, where)
    task_id = r.ident(r.req(task, "id", where), f"{where}.id")
    us_where = f"{where}.user_scenario"
    us = r.obj(r.req(task, "user_scenario", where), us_where)
    persona = r.opt_str(us, "persona", us_where)
    instructions = r.req(us, "instructions", us_where)
    in_where = f"{us_where}.instructions"
    known = unknown = behaviour = None
    if isinstance(instructions, str):  # tau2 also allows plain-text instructions
        if not instructions.strip():
            raise r.fail(in_where, "must not be empty")
        reason = instructions
    else:
        ins = r.obj(instructions, in_where)
        reason = r.text(ins, "reason_for_call", in_where)
        known = r.opt_str(ins, "known_info", in_where)
        unknown = r.opt_str(ins, "unknown_info", in_where)
        behaviour = r.opt_str(ins, "task_instructions", in_where)
    ec_where = f"{where}.evaluation_criteria"
    ec = r.opt_obj(task, "evaluation_criteria", where)
    actions = []
    for j, raw_action in enumerate(r.array(ec.get("actions") or [], f"{ec_where}.actions")):
        a_where = f"{ec_where}.actions[{j}]"
        a = r.obj(raw_action, a_where)
        actions.append(
            _Action(
                name=r.text(a, "name", a_where),
                by_user=r.opt_str(a, "requestor", a_where) == "user",
                arguments=r.opt_obj(a, "arguments", a_where),
            )
        )
    description = r.opt_obj(task, "description", where)
    return _Task(
        index=i,
        id=task_id,
        persona=_clean(persona) or None,
        reason=reason,
        known=known,
        unknown=unknown,
        behaviour=behaviour,
        purpose=r.opt_str(description, "purpose", f"{where}.description"),
        actions=actions,
        communicate=r.texts(ec, "communicate_info", ec_where),
        assertions=r.texts(ec, "nl_assertions", ec_where),
    )


def _read_splits(path: Path, task_ids: list[str]) -> dict[str, Split]:
    r = _Reader(path)
    data = r.obj(_read_json(path), "")
    out: dict[str, Split] = {}
    for split in ("train", "test"):
        for i, raw in enumerate(r.array(data.get(split) or [], split)):
            tid = r.ident(raw, f"{split}[{i}]")
            if out.get(tid, split) != split:
                raise r.fail(f"{split}[{i}]", f"task '{tid}' is also in '{out[tid]}'")
            out[tid] = split
    # Tasks the file does not name are held out from growing but are not official test tasks.
    return {tid: out.get(tid, "dev") for tid in task_ids}


# -- text ----------------------------------------------------------------------------------------
def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def _meaningful(text: str | None) -> bool:
    """tau2 writes 'None' or '.' where a field has nothing to say."""
    t = _clean(text).strip(" .").lower()
    return bool(re.search(r"[a-z0-9]", t)) and t not in ("none", "null", "n/a")


def _short(text: str, n: int) -> str:
    text = _clean(text)
    if len(text) <= n:
        return text
    cut = text[: n - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def _first_sentence(text: str) -> str:
    text = _clean(re.sub(r"\([^()]*\)", "", text))  # parentheses hold asides meant for the customer only
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", text, maxsplit=1)
    return parts[0] if parts else text


_SUBJECT_BEFORE = frozenset(
    {"and", "but", "or", "if", "when", "that", "because", "so", "as", "since", "while", "then"}
    | {"where", "once", "until", "though", "although"}
)
_PRONOUNS = {
    "you are": "I am",
    "you're": "I'm",
    "you were": "I was",
    "you've": "I've",
    "you'll": "I'll",
    "you'd": "I'd",
    "yourself": "myself",
    "yours": "mine",
    "your": "my",
}


def first_person(text: str) -> str:
    """tau2 instructions speak to the customer ('You want to return...'); the customer speaks as 'I'."""

    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        low = word.lower()
        if low in _PRONOUNS:
            out = _PRONOUNS[low]
        else:  # a bare "you": the subject at a clause start, else the object
            before = text[: m.start()].rstrip()
            prev = re.findall(r"[\w']+$", before)
            is_subject = not before or before[-1] in ",;:.!?" or (prev and prev[0].lower() in _SUBJECT_BEFORE)
            out = "I" if is_subject else "me"
        return out if not word[0].isupper() or out == "I" or out.startswith("I ") else out.capitalize()

    return re.sub(
        r"\b(?:you are|you're|you were|you've|you'll|you'd|yourself|yours|your|you)\b",
        swap,
        text,
        flags=re.IGNORECASE,
    )


def opening_line(reason: str) -> str:
    """The customer's first message: the first sentence of the reason for calling, first person."""
    sentence = first_person(_first_sentence(reason)).strip()
    if not re.search(r"[A-Za-z0-9]", sentence):
        return "Hi, I need some help, please."
    sentence = _short(sentence, 160)
    if not sentence.startswith("I ") and not sentence.startswith("I'") and sentence[1:2].islower():
        sentence = sentence[0].lower() + sentence[1:]
    if sentence[-1] not in ".!?…":
        sentence += "."
    return f"Hi, {sentence}"


def slug(text: str, sep: str = "_") -> str:
    out = re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)[:64].strip(sep)
    return out


def policy_heading(policy: str) -> str | None:
    """The policy's title: its first line, when that is a Markdown heading."""
    first = next((line for line in policy.splitlines() if line.strip()), "")
    m = re.match(r"^\s*#{1,6}\s+(.+?)\s*#*\s*$", first)
    return (_clean(re.sub(r"[*_`]", "", m.group(1))) or None) if m else None


# -- intents and difficulty ------------------------------------------------------------------------
def _is_lookup(name: str) -> bool:
    words = re.split(r"[_\-\s]+|(?<=[a-z])(?=[A-Z])", name)
    return bool(words) and words[0].lower() in LOOKUP_VERBS


def _intent(task: _Task) -> tuple[str, str]:
    """(intent id, description) for a task."""
    mine = [a for a in task.actions if not a.by_user] or task.actions
    changes = [a.name for a in mine if not _is_lookup(a.name)]
    if changes:
        name = changes[0]
        words = " ".join(re.split(r"[_\-\s]+", name)).strip()
        intent = slug(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)) or "general"  # rebookFlight too
        return intent, f"Needs {words} (the first state-changing action the task expects)."
    if mine:
        return "inquiry", "Questions about the customer's own records: the task expects only look-ups."
    return "general", "The task expects no action: the agent answers, explains or refuses."


def _difficulty(task: _Task) -> Difficulty:
    changes = sum(1 for a in task.actions if not _is_lookup(a.name))
    weight = changes + len(task.communicate) + len(task.assertions)
    return "easy" if weight <= 1 else "medium" if weight <= 3 else "hard"


# -- db.json: the customer's own records -----------------------------------------------------------
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
                names.append(_clean(v))
    first, last = rec.get("first_name"), rec.get("last_name")
    if isinstance(first, str) and isinstance(last, str):
        names.append(_clean(f"{first} {last}"))
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
class _Person:
    collection: str
    key: str
    record: dict[str, Any]
    strong: list[str]  # ids and emails, lower case
    names: list[str]  # lower case


class _Db:
    """A tau2 db.json: collections of records. People are the records of collections whose records
    mostly carry an email address; a person's records are those that point at their id, or that
    their own lists of ids name."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.collections = {name: list(_records(v)) for name, v in data.items()}
        self.collections = {k: v for k, v in self.collections.items() if v}
        self.people: list[_Person] = []
        self.person_collections: set[str] = set()
        for name, recs in self.collections.items():
            with_email = [(k, r) for k, r in recs if _emails(r)]
            if len(with_email) * 2 >= len(recs):
                self.person_collections.add(name)
                for k, r in recs:
                    strong = sorted({i.lower() for i in _own_ids(k, r)} | {e.lower() for e in _emails(r)})
                    self.people.append(_Person(name, k, r, strong, [n.lower() for n in _names(r)]))

    def find(self, text: str) -> _Person | None:
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

    def owned(self, person: _Person) -> list[tuple[str, str, dict[str, Any], set[str]]]:
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


def _render(value: Any, nested: bool = False) -> str:
    if isinstance(value, dict):
        parts = [f"{k}: {_render(v, True)}" for k, v in value.items() if not _empty(v)]
        return f"({', '.join(parts)})" if nested else "; ".join(parts)
    if isinstance(value, list):
        return "[" + "; ".join(_render(v, True) for v in value if not _empty(v)) + "]"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _clean(str(value))


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
    hidden = _fields_named(list(rec), unknown) if _meaningful(unknown) else set()
    kept = {k: v for k, v in rec.items() if k not in drop | hidden}
    show_key = not any(str(rec[k]) == key for k in hidden if isinstance(rec[k], str | int))
    head = f"Your record in {collection}" + (f" ({key})" if show_key else "")
    return f"{head}: {_render(kept)}"


def _customer_facts(db: _Db, task: _Task) -> list[str] | None:
    args = [" ".join(_leaves(a.arguments)) for a in task.actions]
    text = "\n".join(
        [_clean(t) for t in (task.reason, task.known, task.unknown, task.behaviour) if t] + args
    ).lower()
    person = db.find(text)
    if person is None:
        return None
    unknown = _clean(task.unknown).lower()
    facts = [_record_fact(person.collection, person.key, person.record, set(), unknown)]
    for name, key, rec, links in db.owned(person):
        facts.append(_record_fact(name, key, rec, links, unknown))
    return facts


# -- the import ------------------------------------------------------------------------------------
def load_tau2(folder: str | Path, name: str) -> Tau2Import:
    """Read a tau2-bench domain folder; return the domain (id: ``name`` as a slug) and one
    scenario per task. Raises InputError (file and field) on any problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(str(folder), "", "not a folder")
    domain_id = slug(name, "-")
    if not domain_id or not _clean(name):
        raise InputError("--name", "", f"'{name}' has no letters or digits to make a domain id from")
    for required in REQUIRED_FILES:
        if not (folder / required).is_file():
            raise InputError(str(folder / required), "", "file not found")

    policy_path = folder / "policy.md"
    policy = _read_text(policy_path).strip()
    if not policy:
        raise InputError(str(policy_path), "", "the policy is empty")

    tasks_path = folder / "tasks.json"
    r = _Reader(tasks_path)
    raw_tasks = _read_json(tasks_path)
    if not isinstance(raw_tasks, list):
        raise r.fail("", f"expected an array of tasks, got {_kind(raw_tasks)}")
    if not raw_tasks:
        raise r.fail("", "no tasks")
    tasks = [_parse_task(r, t, i) for i, t in enumerate(raw_tasks)]
    seen: dict[str, int] = {}
    for t in tasks:
        if t.id in seen:
            raise r.fail(f"[{t.index}].id", f"duplicate task id '{t.id}' (also at [{seen[t.id]}])")
        seen[t.id] = t.index

    splits = _read_splits(folder / "split_tasks.json", [t.id for t in tasks])

    db: _Db | None = None
    db_path = folder / DB_FILE
    if db_path.is_file():
        data = _read_json(db_path)
        if not isinstance(data, dict):
            raise InputError(
                str(db_path), "(top level)", f"expected an object of collections, got {_kind(data)}"
            )
        db = _Db(data)

    intents: dict[str, str] = {}
    personas: list[str] = []
    found: list[str] = []
    drafts: list[tuple[_Task, dict[str, Any]]] = []
    for t in tasks:
        intent, description = _intent(t)
        intents.setdefault(intent, description)
        persona = t.persona or DEFAULT_PERSONA
        if persona not in personas:
            personas.append(persona)
        known = [_clean(t.known)] if _meaningful(t.known) else []
        if db is not None:
            facts = _customer_facts(db, t)
            if facts is not None:
                known += facts
                found.append(t.id)
        goal = _clean(t.reason)
        if _meaningful(t.behaviour):
            goal += f" How you behave: {_clean(t.behaviour)}"
        drafts.append(
            (
                t,
                {
                    "domain": domain_id,
                    "title": f"tau2 task {t.id}: {_short(t.purpose or t.reason, 120)}",
                    "intent": intent,
                    "persona": {PERSONA_DIMENSION: persona},
                    "goal": goal,
                    "known_facts": known,
                    "hidden_facts": [_clean(t.unknown)] if _meaningful(t.unknown) else [],
                    "opening": opening_line(t.reason),
                    "success": SuccessCriteria(
                        must_say=[Check(text=c) for c in t.communicate], rubric=list(t.assertions)
                    ),
                    "difficulty": _difficulty(t),
                    "origin": "imported",
                    "split": splits[t.id],
                },
            )
        )

    heading = policy_heading(policy)
    label = _clean(name)
    try:
        domain = Domain(
            id=domain_id,
            name=label,
            company=label,
            agent_role=(
                f"You are the customer-support agent of {label}"
                + (f', working under its "{heading}"' if heading else "")
                + ". Follow the policy exactly."
            ),
            policy=policy,
            persona_dimensions={PERSONA_DIMENSION: personas},
            intents=[Intent(id=i, description=d) for i, d in intents.items()],
            success_criteria=SuccessCriteria(rubric=[DOMAIN_RUBRIC]),
            max_turns=DEFAULT_MAX_TURNS,
        )
    except ValidationError as exc:
        raise describe_validation_error(str(policy_path), exc) from None
    scenarios = []
    for t, spec in drafts:
        try:
            s = Scenario.model_validate(spec)
        except ValidationError as exc:
            err = describe_validation_error(str(tasks_path), exc)
            raise InputError(err.source, f"[{t.index}] (task '{t.id}'): {err.field}", err.problem) from None
        for where, problem in s.problems_with(domain):  # cannot happen: the domain is built from them
            raise InputError(str(tasks_path), f"[{t.index}].{where}", problem)
        scenarios.append(s)
    return Tau2Import(domain, scenarios, found, db is not None)
