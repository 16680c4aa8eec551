"""The database engine: URLs, SQLite pragmas, what every write passes through, and database
errors turned into one line that says what to do."""

from __future__ import annotations

import datetime
import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ..errors import StrategistError, one_line


def database_url(target: str | Path) -> str:
    """A path becomes a SQLite URL; anything with '://' is used as a SQLAlchemy URL.

    A plain ``postgresql://`` (or ``postgres://``) URL gets the psycopg 3 driver, the one the
    ``postgres`` extra installs; SQLAlchemy would otherwise look for psycopg2.
    """
    text = str(target)
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme in ("postgresql", "postgres"):
            return f"postgresql+psycopg://{rest}"
        return text
    return f"sqlite:///{Path(text).expanduser()}"


def _shown(url: str) -> str:
    """A URL fit for an error message: never its password."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://..."


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_dumps(value: Any) -> str:
    """JSON as every database takes it: NaN and infinities (which JSON does not have, and
    PostgreSQL refuses) are stored as null, on SQLite too, so both read back the same."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def _clean(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        # A lone surrogate (e.g. from "\\ud800" in a model's JSON) cannot be encoded: replace it.
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


_SCALARS = frozenset({int, float, bool, type(None), bytes, datetime.datetime, datetime.date})


def _without_nul(value: Any) -> Any:
    """``value`` with every string cleaned (``_clean``). This runs on the parameters of every
    statement (a batch of ledger rows is thousands of values), so a row of clean scalars is checked
    in one loop and returned as it is."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if all(type(v) in _SCALARS or (type(v) is str and v.isascii() and "\x00" not in v) for v in value):
            return value
        return type(value)(_without_nul(v) for v in value)
    return value


def _no_nul_in_text(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _executemany: bool
) -> tuple[str, Any]:
    """NUL characters in text are written as U+FFFD, on every database: PostgreSQL cannot store
    them, and one NUL in a model's reply must not fail the write of a whole dialogue. (JSON columns
    keep them, escaped as \\u0000.)"""
    return statement, _without_nul(parameters)


# How long a SQLite connection waits for another process's write lock before giving up.
BUSY_TIMEOUT_SECONDS = 10.0


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit: a killed process loses no
    # committed row (only a power cut can lose the last few), and a commit costs no fsync.
    cur.execute("PRAGMA synchronous=NORMAL")
    # WAL is a property of the file, set by the first connection. Switching needs the database to
    # itself and does not wait for it (busy_timeout does not apply): when several processes open
    # a new database at once, the switch fails at once with 'database is locked'. Try again.
    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")  # where WAL is impossible, the mode stays as it was
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.02)
    cur.close()


def make_engine(target: str | Path) -> Engine:
    url = database_url(target)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            parent = Path(path).parent
            if not parent.exists():
                raise StrategistError(f"{target}: folder {parent} does not exist")
        engine = sa.create_engine(url, connect_args={"check_same_thread": False}, json_serializer=_json_dumps)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", _no_nul_in_text, retval=True)
        return engine
    try:
        engine = sa.create_engine(url, pool_pre_ping=True, json_serializer=_json_dumps)
        event.listen(engine, "before_cursor_execute", _no_nul_in_text, retval=True)
        return engine
    except ImportError as exc:
        if url.startswith("postgresql"):
            raise StrategistError(
                f"{_shown(url)}: the PostgreSQL driver is not installed (pip install 'strategist[postgres]')"
            ) from None
        raise StrategistError(
            f"{_shown(url)}: the database driver is not installed ({one_line(exc)})"
        ) from None
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise StrategistError(f"{_shown(url)}: cannot open this database URL ({one_line(exc)})") from None


def sqlite_path(target: str | Path) -> Path | None:
    """The file a SQLite target names; None for an in-memory database or another backend."""
    url = database_url(target)
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    return None if not path or path == ":memory:" else Path(path)


def require_existing(target: str | Path) -> None:
    """Refuse a SQLite file that does not exist: a mistyped --db must not become a new, empty library."""
    path = sqlite_path(target)
    if path is not None and not path.exists():
        raise StrategistError(f"{target}: no such database (create one with: strategist init --db {target})")


# What SQLite says, and what the user can do about it.
_SQLITE_ADVICE = (
    ("readonly", "the database is read-only: check the permissions of the file and of its folder"),
    (
        "locked",
        "the database is locked by another process (waited {busy:g} s): try again when it has finished",
    ),
    ("malformed", "the database file is damaged: restore it from a backup"),
    ("not a database", "this is not a strategist database (nor any SQLite database)"),
    ("disk i/o", "the disk failed while reading or writing the database"),
    ("unable to open", "the database file cannot be opened: check the path and its permissions"),
    ("database or disk is full", "the disk is full"),
)


def database_error(exc: BaseException, target: str | Path | None) -> StrategistError:
    """One line for an error the database driver raised, naming the database and what to do."""
    orig = getattr(exc, "orig", None) or exc
    detail = one_line(orig)
    where = _shown(database_url(target)) if target is not None and "://" in str(target) else target
    prefix = f"{where}: " if where is not None else ""
    low = detail.lower()
    for sign, advice in _SQLITE_ADVICE:
        if sign in low:
            return StrategistError(f"{prefix}{advice.format(busy=BUSY_TIMEOUT_SECONDS)} ({detail})")
    return StrategistError(f"{prefix}database error: {detail}")


def integrity_problem(engine: Engine) -> str | None:
    """What SQLite's quick check finds wrong with the file, or None when it is sound (or not SQLite)."""
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as conn:
        rows = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
    return None if rows == ["ok"] else "; ".join(rows[:3])
