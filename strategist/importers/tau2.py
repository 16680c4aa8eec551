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

The task format is read into pydantic models (``Tau2Task`` and its parts, kept on the result);
``tau2_db.py`` mines ``db.json``. Every problem is one ``InputError`` naming the file and the
field; nothing is returned half-made.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..core.domain import ActionCheck, Check, Difficulty, Domain, Intent, Scenario, Split, SuccessCriteria
from ..core.text import short
from ..core.tools import McpServerConfig, ToolsConfig
from ..errors import InputError, describe_validation_error, format_loc
from .tau2_db import CustomerDb, clean, meaningful

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


# -- the task format -----------------------------------------------------------------------------
def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _not_empty(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "must not be empty")
    return value


def _task_id(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PydanticCustomError(
            "id", "expected a task id (string or integer), got {kind}", {"kind": _kind(value)}
        )
    return str(value)


def _array_of_strings(value: Any) -> Any:
    if not isinstance(value, list):
        raise PydanticCustomError("list", "expected an array of strings, got {k}", {"k": _kind(value)})
    return value


Text = Annotated[str, AfterValidator(_not_empty)]
TaskId = Annotated[str, BeforeValidator(_task_id)]
#: Phrases and assertions: each one non-empty, its white space folded.
Texts = Annotated[list[Annotated[Text, AfterValidator(clean)]], BeforeValidator(_array_of_strings)]


class _Format(BaseModel):
    # Strict: a number is not a string. Fields of tau2's format not read here are ignored.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # tau2 writes null for what a task leaves out; a null where a value is needed is "missing".
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class Instructions(_Format):
    """What the simulated customer is told. tau2 also allows plain text: the reason for calling."""

    reason_for_call: Text
    known_info: str | None = None
    unknown_info: str | None = None
    task_instructions: str | None = None  # how the customer behaves

    @model_validator(mode="before")
    @classmethod
    def _plain_text(cls, data: Any) -> Any:
        return {"reason_for_call": _not_empty(data)} if isinstance(data, str) else data


class UserScenario(_Format):
    persona: str | None = None  # free text
    instructions: Instructions


class Action(_Format):
    """An action the task expects: a tool's name and the arguments it is called with."""

    name: Text
    arguments: dict[str, Any] = {}
    requestor: str | None = None  # "user" for an action the customer takes, else the agent's
    compare_args: list[str] | None = None  # the arguments a grader compares (None: all of them)

    @property
    def compared(self) -> dict[str, Any]:
        if self.compare_args is None:
            return dict(self.arguments)
        return {k: v for k, v in self.arguments.items() if k in self.compare_args}


class EvaluationCriteria(_Format):
    actions: list[Action] = []
    communicate_info: Texts = []
    nl_assertions: Texts = []
    reward_basis: list[str] = []  # e.g. ["DB", "NL_ASSERTION"]


class Description(_Format):
    purpose: str | None = None


class Tau2Task(_Format):
    """One task of ``tasks.json``."""

    id: TaskId
    user_scenario: UserScenario
    evaluation_criteria: EvaluationCriteria = EvaluationCriteria()
    description: Description = Description()

    @property
    def actions(self) -> list[Action]:
        return self.evaluation_criteria.actions


class _Splits(_Format):
    train: list[TaskId] = []
    test: list[TaskId] = []


_TASKS = TypeAdapter(list[Tau2Task])
_OBJECT = ("dict_type", "model_type", "model_attributes_type")
_EXPECTED = {"string_type": "a string", "list_type": "an array", **dict.fromkeys(_OBJECT, "an object")}


def _problem(source: Path, exc: ValidationError) -> InputError:
    """The first error in the project's words: ``[3].id: missing``, ``expected a string, got a number``."""
    first = exc.errors()[0]
    kind = first["type"]
    problem = "missing" if kind == "missing" else first["msg"]
    if kind in _EXPECTED:
        problem = f"expected {_EXPECTED[kind]}, got {_kind(first.get('input'))}"
    return InputError(str(source), format_loc(first["loc"]), problem)


@dataclass
class Tau2Import:
    domain: Domain
    scenarios: list[Scenario]
    customers_found: list[str] = field(default_factory=list)  # task ids with db.json facts
    used_db: bool = False
    tasks: list[Tau2Task] = field(default_factory=list)  # as read, in the file's order

    def split_counts(self) -> dict[str, int]:
        counts = {"train": 0, "dev": 0, "test": 0}
        for s in self.scenarios:
            counts[s.split] += 1
        return counts


# -- reading -------------------------------------------------------------------------------------
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


def _read_tasks(path: Path) -> list[Tau2Task]:
    raw = _read_json(path)
    if not isinstance(raw, list):
        raise InputError(str(path), "(top level)", f"expected an array of tasks, got {_kind(raw)}")
    if not raw:
        raise InputError(str(path), "(top level)", "no tasks")
    try:
        tasks = _TASKS.validate_python(raw)
    except ValidationError as exc:
        raise _problem(path, exc) from None
    seen: dict[str, int] = {}
    for i, t in enumerate(tasks):
        if t.id in seen:
            raise InputError(str(path), f"[{i}].id", f"duplicate task id '{t.id}' (also at [{seen[t.id]}])")
        seen[t.id] = i
    return tasks


def _read_splits(path: Path, task_ids: list[str]) -> dict[str, Split]:
    try:
        splits = _Splits.model_validate(_read_json(path))
    except ValidationError as exc:
        raise _problem(path, exc) from None
    out: dict[str, Split] = {}
    named: tuple[tuple[Split, list[str]], ...] = (("train", splits.train), ("test", splits.test))
    for split, ids in named:
        for i, tid in enumerate(ids):
            if out.get(tid, split) != split:
                raise InputError(str(path), f"{split}[{i}]", f"task '{tid}' is also in '{out[tid]}'")
            out[tid] = split
    # Tasks the file does not name are held out from growing but are not official test tasks.
    return {tid: out.get(tid, "dev") for tid in task_ids}


def _read_db(path: Path) -> CustomerDb | None:
    if not path.is_file():
        return None
    data = _read_json(path)
    if not isinstance(data, dict):
        raise InputError(str(path), "(top level)", f"expected an object of collections, got {_kind(data)}")
    return CustomerDb(data)


# -- text ----------------------------------------------------------------------------------------
def _first_sentence(text: str) -> str:
    text = clean(re.sub(r"\([^()]*\)", "", text))  # parentheses hold asides meant for the customer only
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
    sentence = short(sentence, 160)
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
    return (clean(re.sub(r"[*_`]", "", m.group(1))) or None) if m else None


# -- intents and difficulty ------------------------------------------------------------------------
def _is_lookup(name: str) -> bool:
    words = re.split(r"[_\-\s]+|(?<=[a-z])(?=[A-Z])", name)
    return bool(words) and words[0].lower() in LOOKUP_VERBS


def _intent(task: Tau2Task) -> tuple[str, str]:
    """(intent id, description) for a task."""
    mine = [a for a in task.actions if a.requestor != "user"] or task.actions
    changes = [a.name for a in mine if not _is_lookup(a.name)]
    if changes:
        name = changes[0]
        words = " ".join(re.split(r"[_\-\s]+", name)).strip()
        intent = slug(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)) or "general"  # rebookFlight too
        return intent, f"Needs {words} (the first state-changing action the task expects)."
    if mine:
        return "inquiry", "Questions about the customer's own records: the task expects only look-ups."
    return "general", "The task expects no action: the agent answers, explains or refuses."


# Actions that change nothing in the database although their names are not look-ups.
NO_STATE_VERBS = frozenset({"transfer", "think"})


def _changes_state(name: str) -> bool:
    first = re.split(r"[_\-\s]+|(?<=[a-z])(?=[A-Z])", name)[0].lower()
    return not _is_lookup(name) and first not in NO_STATE_VERBS


def _action_checks(task: Tau2Task, state_tools: list[str]) -> tuple[list[ActionCheck], list[ActionCheck]]:
    """(expected, forbidden): the task's own non-look-up actions with the arguments a grader compares;
    and, for a task graded on the database that expects no change to it (a refusal), every tool
    that would change it."""
    mine = [a for a in task.actions if a.requestor != "user"]
    expected = [ActionCheck(name=a.name, arguments=a.compared) for a in mine if not _is_lookup(a.name)]
    forbidden: list[ActionCheck] = []
    graded_on_db = "DB" in task.evaluation_criteria.reward_basis
    if graded_on_db and not any(_changes_state(a.name) for a in mine):
        forbidden = [ActionCheck(name=n) for n in state_tools]
    return expected, forbidden


def _difficulty(task: Tau2Task) -> Difficulty:
    changes = sum(1 for a in task.actions if not _is_lookup(a.name))
    criteria = task.evaluation_criteria
    weight = changes + len(criteria.communicate_info) + len(criteria.nl_assertions)
    return "easy" if weight <= 1 else "medium" if weight <= 3 else "hard"


# -- the import ------------------------------------------------------------------------------------
def load_tau2(
    folder: str | Path,
    name: str,
    *,
    tools: McpServerConfig | None = None,
    tool_names: list[str] | None = None,
) -> Tau2Import:
    """Read a tau2-bench domain folder; return the domain (id: ``name`` as a slug) and one
    scenario per task. ``tools``: the MCP server the agent gets (its ``tools:`` section), and
    ``tool_names`` the tools it lists (else the tools are known only from the tasks' actions).
    Raises InputError (file and field) on any problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(str(folder), "", "not a folder")
    domain_id = slug(name, "-")
    if not domain_id or not clean(name):
        raise InputError("--name", "", f"'{name}' has no letters or digits to make a domain id from")
    for required in REQUIRED_FILES:
        if not (folder / required).is_file():
            raise InputError(str(folder / required), "", "file not found")

    policy_path = folder / "policy.md"
    policy = _read_text(policy_path).strip()
    if not policy:
        raise InputError(str(policy_path), "", "the policy is empty")

    tasks_path = folder / "tasks.json"
    tasks = _read_tasks(tasks_path)
    splits = _read_splits(folder / "split_tasks.json", [t.id for t in tasks])
    db = _read_db(folder / DB_FILE)

    known_tools = tool_names or sorted({a.name for t in tasks for a in t.actions})
    state_tools = [n for n in known_tools if _changes_state(n)]
    intents: dict[str, str] = {}
    personas: list[str] = []
    found: list[str] = []
    drafts: list[dict[str, Any]] = []
    for t in tasks:
        intent, description = _intent(t)
        intents.setdefault(intent, description)
        persona = clean(t.user_scenario.persona) or DEFAULT_PERSONA
        if persona not in personas:
            personas.append(persona)
        ins, criteria = t.user_scenario.instructions, t.evaluation_criteria
        known = [clean(ins.known_info)] if meaningful(ins.known_info) else []
        if db is not None:
            texts = (ins.reason_for_call, ins.known_info, ins.unknown_info, ins.task_instructions)
            facts = db.customer_facts(texts, [a.arguments for a in t.actions], ins.unknown_info)
            if facts is not None:
                known += facts
                found.append(t.id)
        expected, forbidden = _action_checks(t, state_tools)
        goal = clean(ins.reason_for_call)
        if meaningful(ins.task_instructions):
            goal += f" How you behave: {clean(ins.task_instructions)}"
        drafts.append(
            {
                "domain": domain_id,
                "title": f"tau2 task {t.id}: {short(t.description.purpose or ins.reason_for_call, 120)}",
                "intent": intent,
                "persona": {PERSONA_DIMENSION: persona},
                "goal": goal,
                "known_facts": known,
                "hidden_facts": [clean(ins.unknown_info)] if meaningful(ins.unknown_info) else [],
                "opening": opening_line(ins.reason_for_call),
                "success": SuccessCriteria(
                    must_say=[Check(text=c) for c in criteria.communicate_info],
                    rubric=list(criteria.nl_assertions),
                    actions=expected,
                    forbidden_actions=forbidden,
                ),
                "difficulty": _difficulty(t),
                "origin": "imported",
                "split": splits[t.id],
            }
        )

    heading = policy_heading(policy)
    label = clean(name)
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
            tools=ToolsConfig(mcp=tools) if tools is not None else None,
        )
    except ValidationError as exc:
        raise describe_validation_error(str(policy_path), exc) from None
    scenarios = []
    for i, (t, spec) in enumerate(zip(tasks, drafts, strict=True)):
        try:
            s = Scenario.model_validate(spec)
        except ValidationError as exc:
            err = describe_validation_error(str(tasks_path), exc)
            raise InputError(err.source, f"[{i}] (task '{t.id}'): {err.field}", err.problem) from None
        for where, problem in s.problems_with(domain):  # cannot happen: the domain is built from them
            raise InputError(str(tasks_path), f"[{i}].{where}", problem)
        scenarios.append(s)
    return Tau2Import(domain, scenarios, found, db is not None, tasks)
