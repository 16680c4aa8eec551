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
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.evidence import GateEvidence
from ..core.text import short
from ..errors import InputError
from ..files import Locator, parse_yaml, read_text, validate
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


# What the strategy was when the file was written, e.g. "approved v2" (read-only): an import whose
# strategy has moved on since (another review, an edit) is a conflict, not a silent overwrite.
Exported = Annotated[str, Field(pattern=r"^(pending|approved|rejected|retired) v[1-9][0-9]*$")]


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
    evidence: GateEvidence = Field(default_factory=GateEvidence)
    versions: list[VersionEntry] = Field(default_factory=list)
    exported: Exported | None = None

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


class _FlowMap(dict[str, Any]):
    """A mapping written on one line: one gate pair, one line of the diff."""


def _rounded(value: Any) -> Any:
    """Numbers rounded all the way down (dicts keep their keys' order)."""
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return _round(value)


INTEGER_FIELDS = (
    "samples",
    "max_samples",
    "weakest_turn",
    "flagged_pairs",
    "unjudged_pairs",
    "best_dialogue_id",
    "worst_dialogue_id",
)


def export_evidence(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The gate's evidence as the file holds it: every field that has a value, numbers rounded;
    one pair and one batch a line."""
    data = GateEvidence.from_stored(stored).model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("pairs", "batches"):
            value = [_FlowMap(_rounded(item)) for item in value]
        elif isinstance(value, dict):
            value = _sorted(_rounded(value))
        elif isinstance(value, list):
            value = [_round(v) for v in value]
        elif key not in INTEGER_FIELDS:
            value = _round(value)
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
    entry["evidence"] = export_evidence(row.evidence)
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
    entry["exported"] = f"{row.status} v{row.version}"
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


def _flow_map(dumper: yaml.SafeDumper, value: _FlowMap) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=True)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(list, _list)
_Dumper.add_representer(_FlowMap, _flow_map)


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
def read_library(path: Path) -> tuple[LibraryFile, Locator]:
    """Parse and validate a library file; any problem is one InputError naming line and field."""
    return parse_library(read_text(path), str(path))


M = TypeVar("M", bound=BaseModel)


def load_model(text: str, source: str, model: type[M]) -> tuple[M, Locator]:
    """YAML text validated as ``model``; any problem is one InputError naming line and field."""
    data, where = parse_yaml(text, source)
    return validate(model, data, source, where), where


def parse_library(text: str, source: str = "<library>") -> tuple[LibraryFile, Locator]:
    return load_model(text, source, LibraryFile)


def _error(source: str, where: Locator, loc: Sequence[Any], problem: str) -> InputError:
    return where.error(source, loc, problem)


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
    last_change: str = ""  # "approved by alice at 2026-11-22 03:12", from the review trail


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
            label = f"new strategy {e.id}" if e.id is not None else "a new strategy"
            version = plan.creates[-1].version
            plan.changes.append(f"+ {label} in {e.domain}: {e.status}, version {version}: {short(e.trigger)}")
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
        evidence=e.evidence.stored(),
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
    if e.exported is not None and e.exported != f"{state.status} v{state.version}":
        raise ConflictError(
            f"{source}: line {where.line(at)}: strategies[{_index(at)}]: strategy {sid} changed since the "
            f"file was exported ({e.exported} then, {state.status} v{state.version} now"
            f"{', ' + state.last_change if state.last_change else ''}); nothing was changed: "
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
