"""A strategy library as a YAML file that lives well in git.

Export is deterministic: strategies by id, keys in a fixed order (free-form maps sorted), long or
multi-line text as block scalars, numbers rounded, and nothing that changes between two exports of
the same library (no export time, no usage counters). Import validates the whole file first,
then turns it into review actions; the store applies them in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import InputError
from .lifecycle import (
    TEXT_FIELDS,
    ConflictError,
    ReviewRequest,
    Status,
    Text,
    TransitionError,
    action_between,
    next_status,
)

FORMAT = "strategist-library/1"
HEADER = """\
# A strategist strategy library. Change trigger, guidance, example or status here and load it
# with `strategist strategies import FILE`: each change becomes a reviewed action in the trail.
# `versions` is the history (read-only for strategies already in the database). Regenerate with
# `strategist strategies export FILE`.
"""
# Text longer than this (or with line breaks) is written as a block scalar, one clean diff line.
BLOCK_AFTER = 60
DIGITS = 4


def _stamp(value: datetime) -> str:
    """UTC, to the second: SQLite returns naive datetimes, which are stored as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_stamp() -> str:
    return _stamp(datetime.now(UTC))


# -- the file's schema -------------------------------------------------------------------------
NonBlank = Annotated[str, Field(min_length=1)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyCheckEntry(_Strict):
    conflict: bool
    clause: str = ""
    explanation: str = ""
    model: str = ""
    version: int = Field(ge=1)
    checked_at: str = ""


class EvidenceEntry(_Strict):
    samples: int | None = None
    pairs: int | None = None
    deltas: list[float] = Field(default_factory=list)
    mean_delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    threshold: float | None = None
    regression_mean: float | None = None
    decision: str | None = None


class VersionEntry(_Strict):
    version: int = Field(ge=1)
    author: NonBlank
    created_at: datetime
    trigger: NonBlank
    guidance: NonBlank
    example: str = ""

    _blank = field_validator("trigger", "guidance")(_not_blank)

    @property
    def text(self) -> Text:
        return Text(self.trigger, self.guidance, self.example)


class StrategyEntry(_Strict):
    id: int | None = Field(default=None, ge=1)
    domain: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    status: Status = "pending"
    version: int = Field(default=1, ge=1)
    trigger: NonBlank
    guidance: NonBlank
    example: str = ""
    policy_check: PolicyCheckEntry | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)
    evidence: EvidenceEntry = Field(default_factory=EvidenceEntry)
    versions: list[VersionEntry] = Field(default_factory=list)

    _blank = field_validator("trigger", "guidance")(_not_blank)

    @property
    def text(self) -> Text:
        return Text(self.trigger, self.guidance, self.example)


class LibraryFile(_Strict):
    format: Literal["strategist-library/1"]
    strategies: list[StrategyEntry] = Field(default_factory=list)


# -- export --------------------------------------------------------------------------------------
def _round(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), DIGITS)
    return value


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def evidence_summary(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The gate's evidence without the per-pair detail; applying it twice changes nothing."""
    out: dict[str, Any] = {}
    pairs = evidence.get("pairs")
    for key in EvidenceEntry.model_fields:
        if key == "pairs":
            value: Any = len(pairs) if isinstance(pairs, list) else pairs
        elif key == "deltas":
            value = [_round(d) for d in evidence.get("deltas") or []] or None
        else:
            value = evidence.get(key)
            if key != "samples":
                value = _round(value)
        if value is not None:
            out[key] = value
    return out


def policy_entry(check: Mapping[str, Any]) -> dict[str, Any]:
    return {k: check[k] for k in PolicyCheckEntry.model_fields if k in check}


def strategy_entry(row: Any, versions: Sequence[Any]) -> dict[str, Any]:
    """One strategy (a StrategyRow and its StrategyVersionRows) in the file's key order."""
    entry: dict[str, Any] = {
        "id": row.id,
        "domain": row.domain_id,
        "status": row.status,
        "version": row.version,
        "trigger": row.trigger,
        "guidance": row.guidance,
        "example": row.example,
    }
    if row.policy_check:
        entry["policy_check"] = policy_entry(row.policy_check)
    entry["provenance"] = _sorted(dict(row.provenance))
    entry["evidence"] = evidence_summary(row.evidence)
    entry["versions"] = [
        {
            "version": v.version,
            "author": v.author,
            "created_at": _stamp(v.created_at),
            "trigger": v.trigger,
            "guidance": v.guidance,
            "example": v.example,
        }
        for v in sorted(versions, key=lambda v: v.version)
    ]
    return entry


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent list items under their key: the usual style in hand-written YAML.
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value or len(value) > BLOCK_AFTER else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    flow = bool(value) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(list, _list)


def dump_yaml(data: Any) -> str:
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=10**6,  # never fold long quoted lines: a one-word change stays a one-line diff
        default_flow_style=False,
    )


def dump_library(entries: Sequence[Mapping[str, Any]]) -> str:
    return HEADER + dump_yaml({"format": FORMAT, "strategies": [dict(e) for e in entries]})


# -- reading a file, with line numbers in every error ------------------------------------------
@dataclass
class Locator:
    """Maps a path in the parsed data (``("strategies", 2, "status")``) to a line of the file."""

    root: yaml.Node | None

    def line(self, path: Sequence[Any]) -> int:
        node = self.root
        if node is None:
            return 1
        for part in path:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if k.value == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = node.value[part]
            if child is None:
                break  # a missing field: point at the mapping that lacks it
            node = child
        return node.start_mark.line + 1


def field_path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def _error(source: str, where: Locator, loc: Sequence[Any], problem: str) -> InputError:
    return InputError(source, f"line {where.line(loc)}: {field_path(loc)}", problem)


def read_library(path: Path) -> tuple[LibraryFile, Locator]:
    """Parse and validate a library file; any problem is one InputError naming line and field."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(source, "", f"cannot read: {exc}") from None
    return parse_library(text, source)


M = TypeVar("M", bound=BaseModel)


def load_model(text: str, source: str, model: type[M]) -> tuple[M, Locator]:
    """YAML text validated as ``model``; any problem is one InputError naming line and field."""
    try:
        data = yaml.safe_load(text)
        where = Locator(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(source, line, f"invalid YAML: {problem}") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. a date or number YAML cannot build
        raise InputError(source, "", f"invalid YAML: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        fields = ", ".join(f"'{f}'" for f in model.model_fields)
        raise InputError(source, "line 1", f"expected a mapping with {fields}")
    try:
        return model.model_validate(data), where
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _error(source, where, first.get("loc", ()), first.get("msg", "invalid")) from None


def parse_library(text: str, source: str = "<library>") -> tuple[LibraryFile, Locator]:
    return load_model(text, source, LibraryFile)


# -- planning an import --------------------------------------------------------------------------
@dataclass(frozen=True)
class CurrentState:
    """What the database holds for one strategy, as far as an import is concerned."""

    id: int
    domain: str
    status: str
    version: int
    text: Text
    first: Text


@dataclass(frozen=True)
class VersionSpec:
    version: int
    text: Text
    author: str
    created_at: datetime


@dataclass(frozen=True)
class NewStrategy:
    """A strategy the import adds, with its history as the file gives it."""

    id: int | None
    domain: str
    status: str
    version: int
    text: Text
    provenance: dict[str, Any]
    evidence: dict[str, Any]
    policy_check: dict[str, Any] | None
    versions: tuple[VersionSpec, ...]


@dataclass
class ImportPlan:
    creates: list[NewStrategy] = field(default_factory=list)
    reviews: list[ReviewRequest] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # one human-readable line per changed strategy
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not self.creates and not self.reviews


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def plan_import(
    lib: LibraryFile,
    where: Locator,
    source: str,
    current: Mapping[int, CurrentState],
    domain_known: Callable[[str], bool],
    *,
    reviewer: str,
    note: str,
) -> ImportPlan:
    """Check every entry against the database and turn the differences into review actions.

    Raises before anything is written: InputError (with line and field) for a change the
    lifecycle does not allow, ConflictError where the database moved on since the export.
    """
    plan = ImportPlan()
    seen_ids: dict[int, int] = {}
    for i, e in enumerate(lib.strategies):
        at: tuple[Any, ...] = ("strategies", i)
        if e.id is not None:
            if e.id in seen_ids:
                raise _error(
                    source, where, (*at, "id"), f"id {e.id} also used by strategies[{seen_ids[e.id]}]"
                )
            seen_ids[e.id] = i
        if not domain_known(e.domain):
            raise _error(
                source,
                where,
                (*at, "domain"),
                f"unknown domain '{e.domain}': load it with strategist domains add",
            )
        for k, v in enumerate(e.versions):
            if v.version != k + 1:
                raise _error(
                    source, where, (*at, "versions", k, "version"), "versions must be numbered 1, 2, 3, …"
                )
        if e.versions and e.version != e.versions[-1].version:
            raise _error(
                source,
                where,
                (*at, "version"),
                f"is {e.version} but the last listed version is {e.versions[-1].version}",
            )
        state = current.get(e.id) if e.id is not None else None
        if state is None:
            plan.creates.append(_new_strategy(e, reviewer))
            label = f"strategy {e.id}" if e.id is not None else "a strategy"
            version = plan.creates[-1].version
            plan.changes.append(
                f"+ new {label} in {e.domain}: {e.status}, version {version}: {_short(e.trigger)}"
            )
            continue
        _plan_update(plan, e, state, source, where, at, reviewer, note)
    return plan


def _new_strategy(e: StrategyEntry, reviewer: str) -> NewStrategy:
    versions = [VersionSpec(v.version, v.text, v.author, v.created_at) for v in e.versions]
    if not versions:
        versions = [VersionSpec(1, e.text, reviewer, datetime.now(UTC))]
    elif versions[-1].text != e.text:
        # Words changed by hand in the file for a strategy the database does not have yet.
        versions.append(VersionSpec(versions[-1].version + 1, e.text, reviewer, datetime.now(UTC)))
    return NewStrategy(
        id=e.id,
        domain=e.domain,
        status=e.status,
        version=versions[-1].version,
        text=e.text,
        provenance=dict(e.provenance),
        evidence=e.evidence.model_dump(exclude_none=True, exclude_defaults=True),
        policy_check=e.policy_check.model_dump() if e.policy_check else None,
        versions=tuple(versions),
    )


def _plan_update(
    plan: ImportPlan,
    e: StrategyEntry,
    state: CurrentState,
    source: str,
    where: Locator,
    at: tuple[Any, ...],
    reviewer: str,
    note: str,
) -> None:
    sid = state.id
    if e.domain != state.domain:
        raise _error(source, where, (*at, "domain"), f"strategy {sid} belongs to domain '{state.domain}'")
    if e.versions and e.versions[0].text != state.first:
        raise _error(
            source,
            where,
            (*at, "id"),
            f"strategy {sid} in the database is a different strategy (its first version differs); "
            "remove the id to add this one as new",
        )
    changed = e.text.changed_fields(state.text)
    if not changed and e.status == state.status:
        plan.unchanged += 1
        return
    if e.version != state.version:
        raise ConflictError(
            f"{source}: line {where.line(at)}: strategies[{_index(at)}]: strategy {sid} is at version "
            f"{state.version} in the database but the file was exported at version {e.version}; "
            "export again and redo the change"
        )
    what: list[str] = []
    status, version = state.status, state.version
    if changed:
        try:
            status = next_status("edit", status, approve=e.status == "approved", strategy_id=sid)
        except TransitionError as exc:
            raise _error(
                source, where, (*at, "trigger" if "trigger" in changed else changed[0]), str(exc)
            ) from None
        plan.reviews.append(
            ReviewRequest(
                sid,
                "edit",
                reviewer,
                note,
                seen_version=version,
                seen_status=state.status,
                text=e.text,
                approve=status == "approved",
            )
        )
        what.append(
            f"edited {'/'.join(f for f in TEXT_FIELDS if f in changed)} (v{version} -> v{version + 1})"
        )
        version += 1
        if status != state.status:
            what.append(f"{state.status} -> {status}")
    if status != e.status:
        action = action_between(status, e.status)
        if action is None:
            if changed:
                problem = f"an edited strategy is {status}, and {status} -> {e.status} is not a review action"
            else:
                hint = " (edit its text to send it back to pending)" if e.status == "pending" else ""
                problem = f"{status} -> {e.status} is not a review action{hint}"
            raise _error(source, where, (*at, "status"), problem)
        plan.reviews.append(
            ReviewRequest(sid, action, reviewer, note, seen_version=version, seen_status=status)
        )
        what.append(f"{status} -> {e.status}")
    plan.changes.append(f"~ strategy {sid}: " + ", ".join(what))


def _index(at: tuple[Any, ...]) -> Any:
    return at[1]
