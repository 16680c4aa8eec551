"""One error hierarchy. The CLI prints any StrategistError as one line and exits 1."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any


class StrategistError(Exception):
    """Base class for every error strategist raises on purpose."""


class ConfigError(StrategistError):
    """A configuration file, flag or environment variable is invalid."""


class InputError(StrategistError):
    """A user-supplied file (domain pack, scenario set, ...) is invalid.

    The message names the file and the field, e.g. ``domain.yaml: intents[2].id: field required``.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        # One line whatever the file holds: keys and values quoted from it may contain line breaks.
        self.source = source
        self.field = _single_line(field)
        self.problem = _single_line(problem)
        where = f"{source}: {self.field}: " if self.field else f"{source}: "
        super().__init__(where + self.problem)


class NotFoundError(StrategistError):
    """A requested row (scenario, strategy, run, domain) does not exist."""


class ModelError(StrategistError):
    """A model call failed after its retries."""

    def __init__(self, model: str, message: str) -> None:
        self.model = model
        super().__init__(f"model {model}: {message}")


class ModelUnavailableError(StrategistError):
    """A model cannot be used at all (missing package or file, unknown name, rejected credentials).

    Not a ModelError on purpose: a run catches ModelError per call and carries on, but this one
    would fail every call, so it stops the run with a clear message instead.
    """

    def __init__(self, model: str, message: str) -> None:
        self.model = model
        super().__init__(f"model {model}: {message}")


class ToolsUnavailableError(StrategistError):
    """A domain's tools cannot be used at all: the server will not start, the module will not
    import, the connection died. A problem with one tool call is not this: it becomes an error
    result the model sees."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(_single_line(f"tools for {source}: {message}"))


class StructuredOutputError(ModelError):
    """A model kept returning output that does not validate, after every re-ask."""

    def __init__(self, model: str, attempts: int, last_output: str, last_error: str, tokens: int) -> None:
        self.attempts = attempts
        self.last_output = last_output
        self.last_error = last_error
        self.tokens = tokens
        super().__init__(model, f"invalid structured output after {attempts} attempts: {last_error}")


class BudgetExceeded(StrategistError):
    """A run reached one of its budgets (calls, tokens). State up to here is saved."""

    def __init__(self, what: str, used: float, limit: float) -> None:
        self.what = what
        self.used = used
        self.limit = limit
        if isinstance(limit, float):
            super().__init__(f"budget reached: {what} {used:.4f} of {limit:.4f}")
        else:
            super().__init__(f"budget reached: {what} {used} of {limit}")


def _single_line(text: str) -> str:
    return " ".join(text.split())


# Environment variables whose values are secrets: OPENAI_API_KEY, MY_JUDGE_KEY, HF_TOKEN, ...
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MIN_SECRET = 8  # shorter values ("none", "1") are placeholders, and too common to blank out
REDACTED = "[redacted]"


def redact_secrets(text: str, extra: Iterable[str | None] = ()) -> str:
    """``text`` with every secret it quotes blanked out: the values of secret-named environment
    variables and ``extra`` (e.g. the key a request was sent with). Servers echo keys in errors."""
    secrets = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v.strip()) >= _MIN_SECRET}
    secrets.update(e for e in extra if e and len(e.strip()) >= _MIN_SECRET)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def one_line(exc: BaseException) -> str:
    """A single-line rendering of an error, for the CLI and the ledger; secrets blanked out."""
    return redact_secrets(_single_line(str(exc) or type(exc).__name__))


def format_loc(loc: Any) -> str:
    """A pydantic error location as a path: ``intents[2].id``."""
    field = ""
    for part in loc:
        if isinstance(part, int):
            field += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for an invalid mapping key: the key itself is named
            field += ("." if field else "") + str(part)
    return field or "(top level)"


def describe_validation_error(source: str, err: Any) -> InputError:
    """Turn the first pydantic ValidationError entry into an InputError naming file and field."""
    first = err.errors()[0]
    return InputError(source, format_loc(first.get("loc", ())), first.get("msg", "invalid"))
