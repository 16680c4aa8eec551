"""Reading real support transcripts: JSONL (one conversation a line, OpenAI-format ``messages``
plus optional ``id``, ``outcome``, ``csat``, ``tags``, ``created_at``) or CSV (one row a message:
conversation id, role, text, time; the shape most helpdesk exports take).

Every problem is one InputError naming the file, the line and the field
(``calls.jsonl: line 7: messages[2].role: Input should be 'system', ...``). With ``skip_bad`` a
bad conversation is left out and its error kept instead."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import InputError, format_loc
from ..files import read_text

# Exports are bigger than packs: a hundred thousand conversations fit.
MAX_TRANSCRIPT_BYTES = 256 * 1024 * 1024


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class TranscriptMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class TranscriptLine(BaseModel):
    """One conversation of a JSONL export."""

    model_config = ConfigDict(extra="forbid")

    id: str | int | None = None
    messages: list[TranscriptMessage] = Field(min_length=1)
    outcome: str | None = Field(default=None, max_length=200)
    csat: float | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime | None = None

    @model_validator(mode="after")
    def _a_conversation(self) -> TranscriptLine:
        roles = [m.role for m in self.messages if m.role == "assistant" or _has_text(m)]
        if "user" not in roles:
            raise ValueError("messages: no customer ('user') message with text")
        if "assistant" not in roles:
            raise ValueError("messages: no agent ('assistant') message")
        return self


def _has_text(m: TranscriptMessage) -> bool:
    if isinstance(m.content, str):
        return bool(m.content.strip())
    return any((p.text or "").strip() for p in m.content or [])


@dataclass
class Transcript:
    """A conversation as read from the file (not yet redacted)."""

    line: int
    key: str  # its id, else a digest of its messages: importing a file twice adds nothing
    messages: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass
class ReadResult:
    transcripts: list[Transcript]
    errors: list[str]  # one line each, for the conversations left out with skip_bad


def _digest(messages: list[dict[str, Any]]) -> str:
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def read_transcripts(path: Path, *, skip_bad: bool = False) -> ReadResult:
    """The conversations of a .jsonl (or .ndjson) or .csv file."""
    text = read_text(path, max_bytes=MAX_TRANSCRIPT_BYTES)
    if path.suffix.lower() == ".csv":
        return read_csv_text(text, str(path), skip_bad=skip_bad)
    return read_jsonl_text(text, str(path), skip_bad=skip_bad)


def read_jsonl_text(text: str, source: str, *, skip_bad: bool = False) -> ReadResult:
    out: list[Transcript] = []
    errors: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            out.append(_jsonl_line(raw, n, source))
        except InputError as exc:
            if not skip_bad:
                raise
            errors.append(str(exc))
    if not out and not errors:
        raise InputError(source, "", "no conversations in the file")
    return ReadResult(out, errors)


def _jsonl_line(raw: str, n: int, source: str) -> Transcript:
    where = f"line {n}"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InputError(source, where, f"not valid JSON ({exc.args[0].split(':')[0]})") from None
    except RecursionError:
        raise InputError(source, where, "not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(source, where, f"expected a JSON object, got {type(data).__name__}")
    try:
        item = TranscriptLine.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc", ())
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise InputError(source, f"{where}: {format_loc(loc)}" if loc else where, msg) from None
    messages = [m.model_dump(exclude_none=True) for m in item.messages]
    meta: dict[str, Any] = {"outcome": item.outcome, "csat": item.csat, "tags": item.tags}
    key = str(item.id) if item.id is not None else _digest(messages)
    return Transcript(
        n, key, messages, {k: v for k, v in meta.items() if v not in (None, [])}, item.created_at
    )


# -- CSV --------------------------------------------------------------------------------------
COLUMNS = {
    "conversation": (
        "conversation_id",
        "conversation",
        "ticket_id",
        "ticket",
        "chat_id",
        "thread_id",
        "session_id",
    ),
    "role": ("role", "author", "sender", "from", "speaker", "author_type"),
    "text": ("text", "message", "content", "body"),
    "time": ("time", "timestamp", "created_at", "sent_at", "date"),
}
CUSTOMER_ROLES = (
    "user",
    "customer",
    "client",
    "end-user",
    "end_user",
    "enduser",
    "requester",
    "visitor",
    "contact",
)
AGENT_ROLES = ("assistant", "agent", "bot", "support", "staff", "operator", "admin")
SKIPPED_ROLES = ("system", "note", "internal", "internal_note")


def read_csv_text(text: str, source: str, *, skip_bad: bool = False) -> ReadResult:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(source, "", "the file is empty") from None
    except csv.Error as exc:
        raise InputError(source, "line 1", f"not valid CSV: {exc}") from None
    names = [h.strip().lower().replace(" ", "_") for h in header]
    cols: dict[str, int] = {}
    for what, aliases in COLUMNS.items():
        found = next((names.index(a) for a in aliases if a in names), None)
        if found is not None:
            cols[what] = found
        elif what != "time":
            raise InputError(source, "line 1", f"no {what} column (one of: {', '.join(aliases)})")
    groups: dict[str, list[tuple[int, str, str, datetime | None]]] = {}
    bad: dict[str, str] = {}  # conversation id -> its first error
    errors: list[str] = []
    width = max(cols.values()) + 1
    try:
        for row in reader:
            n = reader.line_num
            if not any(c.strip() for c in row):
                continue
            try:
                cid, msg = _csv_row(row, n, source, cols, width)
            except InputError as exc:
                if not skip_bad:
                    raise
                cid = row[cols["conversation"]].strip() if len(row) > cols["conversation"] else ""
                if cid and cid not in bad:
                    bad[cid] = str(exc)
                elif not cid:
                    errors.append(str(exc))
                continue
            if msg is not None:
                groups.setdefault(cid, []).append(msg)
            else:
                groups.setdefault(cid, [])
    except csv.Error as exc:
        raise InputError(source, f"line {reader.line_num}", f"not valid CSV: {exc}") from None
    out: list[Transcript] = []
    for cid, rows in groups.items():
        if cid in bad:
            errors.append(bad[cid])
            continue
        try:
            out.append(_csv_conversation(cid, rows, source))
        except InputError as exc:
            if not skip_bad:
                raise
            errors.append(str(exc))
    errors += [e for cid, e in bad.items() if cid not in groups]
    if not out and not errors:
        raise InputError(source, "", "no conversations in the file")
    return ReadResult(out, errors)


def _csv_row(
    row: list[str], n: int, source: str, cols: dict[str, int], width: int
) -> tuple[str, tuple[int, str, str, datetime | None] | None]:
    where = f"line {n}"
    if len(row) < width:
        raise InputError(source, where, f"expected at least {width} columns, got {len(row)}")
    cid = row[cols["conversation"]].strip()
    if not cid:
        raise InputError(source, f"{where}: conversation_id", "is empty")
    role = row[cols["role"]].strip().lower()
    if role in SKIPPED_ROLES:
        return cid, None
    if role in CUSTOMER_ROLES:
        mapped = "user"
    elif role in AGENT_ROLES:
        mapped = "assistant"
    else:
        raise InputError(
            source,
            f"{where}: role",
            f"'{role}' is neither a customer ({CUSTOMER_ROLES[1]}, ...) nor an agent (agent, ...)",
        )
    text = row[cols["text"]]
    when = None
    if "time" in cols and row[cols["time"]].strip():
        try:
            when = datetime.fromisoformat(row[cols["time"]].strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(
                source, f"{where}: time", f"'{row[cols['time']].strip()}' is not an ISO 8601 time"
            ) from None
    return cid, (n, mapped, text, when)


def _csv_conversation(cid: str, rows: list[tuple[int, str, str, datetime | None]], source: str) -> Transcript:
    first = rows[0][0] if rows else 0
    # Exports list messages in time order mostly; sort by the time column where every row has one.
    if rows and all(r[3] is not None for r in rows):
        with contextlib.suppress(TypeError):  # naive and aware times mixed: keep the file's order
            rows = sorted(rows, key=lambda r: r[3])  # type: ignore[arg-type, return-value]
    messages = [{"role": role, "content": text} for _, role, text, _ in rows if text.strip()]
    try:
        TranscriptLine.model_validate({"messages": messages})
    except ValidationError as exc:
        msg = str(exc.errors()[0].get("msg", "invalid")).removeprefix("Value error, ")
        raise InputError(source, f"line {first}: conversation {cid}", msg) from None
    return Transcript(first, cid, messages, {}, rows[0][3] if rows else None)
