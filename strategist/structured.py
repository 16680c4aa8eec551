"""Structured output: ask for JSON matching a pydantic model, re-ask with the validation error,
and give up with one StructuredOutputError that carries the attempts and the last output."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, model_validator

from .errors import StructuredOutputError, format_loc
from .models.base import ChatModel, Completion, Message, Sampling
from .prompting import render


def bounded_int(low: int, high: int) -> Any:
    """An integer field in [low, high]: the schema says so, and a value outside it becomes the
    nearest bound instead of a re-ask (a local model's grammar does not enforce integer bounds)."""

    def clamp(value: Any) -> Any:
        return min(max(value, low), high) if isinstance(value, int) and not isinstance(value, bool) else value

    # The bounds first: a validator before them would leave them out of the JSON schema.
    return Annotated[int, Field(ge=low, le=high), BeforeValidator(clamp)]


T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> str:
    """The JSON object in a reply: inside a code fence if there is one, else first '{' to last '}'."""
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end < start:
        raise ValueError("no JSON object found in the reply")
    return text[start : end + 1]


def _closer(body: str) -> str:
    """What closes every string, array and object still open at the end of ``body``."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in body:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    return ('"' if in_string else "") + "".join(reversed(stack))


def repair_truncated(text: str) -> str | None:
    """A reply cut off at the token limit ('{"a": 1, "b": {"c": "some te') closed properly; a
    value cut off before it began (a dangling key or comma) is dropped."""
    start = text.find("{")
    if start == -1:
        return None
    body = text[start:].rstrip()
    if body.endswith("\\"):
        body = body[:-1]
    for _ in range(3):  # the whole text, then without its last incomplete member or two
        candidate = body + _closer(body)
        try:
            json.loads(candidate)
        except ValueError:
            cut = body.rfind(",")
            if cut <= 0:
                return None
            body = body[:cut].rstrip()
            continue
        return candidate
    return None


def parse_output(text: str, output_type: type[T]) -> T:
    try:
        return output_type.model_validate_json(extract_json(text))
    except (ValueError, ValidationError) as exc:
        repaired = repair_truncated(text)
        if repaired is None:
            raise exc from None
        return output_type.model_validate_json(repaired)


# llama.cpp turns a string's maxLength into one grammar rule per character and refuses very
# long ones. Bounds up to this size stay (they stop a small model looping inside a string);
# longer ones are left to validation, and a too-long answer is re-asked.
GRAMMAR_MAX_LENGTH = 600


def _strip_bounds(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _strip_bounds(v)
            for k, v in node.items()
            if not (k == "maxLength" and isinstance(v, int) and v > GRAMMAR_MAX_LENGTH)
        }
    if isinstance(node, list):
        return [_strip_bounds(v) for v in node]
    return node


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """Replace each ``{"$ref": "#/$defs/X"}`` by X itself: small models copy a ``$ref`` string
    into the values they write, and a schema without references gives them none to copy.
    (strategist's output models are not recursive, so this ends.)"""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


@functools.lru_cache(maxsize=256)  # generating a schema costs more than a scripted model's call
def schema_text(output_type: type[BaseModel]) -> str:
    """The JSON schema sent to the model and its backend (without string length bounds)."""
    # Keep the model's field order: a grammar generates fields in this order, so long free text
    # goes last, where a reply cut off at the token limit is still repairable.
    full = output_type.model_json_schema()
    schema = _strip_bounds(_inline_refs(full, full.get("$defs", {})))
    return json.dumps(schema, separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def _docstrings(cls: type[BaseModel]) -> tuple[str, ...]:
    """The output model's docstrings (its schema's description; a model made by ``create_model``
    from one shows its base's), normalised once per class: a small model copies them into fields."""
    own = [c for c in cls.__mro__ if issubclass(c, Content) and c is not Content]
    return tuple(" ".join(c.__doc__.split()).casefold() for c in own if c.__doc__)


class Content(BaseModel):
    """A structured output whose text fields must hold content, not text copied from the schema:
    small models write a ``$ref`` such as ``#/$defs/Proposal``, or the field's own description,
    into the value. Such output fails validation and is re-asked with the error."""

    @model_validator(mode="after")
    def _no_schema_echo(self) -> Content:
        docs = _docstrings(type(self))
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            for text in value if isinstance(value, list) else [value]:
                if not isinstance(text, str):
                    continue
                t = text.strip()
                if "$defs" in t or t.startswith("#/"):
                    raise ValueError(f"{name}: a reference from the JSON schema, not content")
                echo = t.casefold().rstrip(".,;: ")
                if info.description and t and echo == info.description.casefold().rstrip(".,;: "):
                    raise ValueError(f"{name}: the field's description repeated, not content")
                words = " ".join(t.split()).casefold()
                if len(words) >= 24 and any(d.startswith(words[:40]) for d in docs):
                    raise ValueError(f"{name}: the schema's description repeated, not content")
        return self


def _error_summary(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for e in exc.errors()[:3]:
            parts.append(f"{format_loc(e.get('loc', ()))}: {e.get('msg')}")
        return "; ".join(parts)
    return " ".join(str(exc).split())


async def complete_structured(
    model: ChatModel,
    messages: Sequence[Message],
    output_type: type[T],
    *,
    sampling: Sampling | None = None,
    attempts: int = 3,
) -> tuple[T, list[Completion]]:
    """Return the parsed output and every completion it took.

    The schema is appended to the last user message and passed to the backend, which constrains
    the output where it can. Output that does not validate is re-asked with the error.
    """
    schema = schema_text(output_type)
    convo = [dict(m) for m in messages]
    convo[-1]["content"] = convo[-1]["content"] + "\n\n" + render("structured_output.j2", schema=schema)
    s = replace(sampling or Sampling(), json_schema=schema)
    completions: list[Completion] = []
    last_error = ""
    for attempt in range(attempts):
        if attempt:
            # Re-ask without a fixed seed, or a deterministic backend repeats the same mistake.
            s = replace(s, seed=None if s.seed is None else s.seed + attempt)
        c = await model.complete(convo, s)
        completions.append(c)
        try:
            return parse_output(c.text, output_type), completions
        except (ValueError, ValidationError) as exc:
            last_error = _error_summary(exc)
        convo = [
            *convo,
            {"role": "assistant", "content": c.text},
            {"role": "user", "content": render("reask.j2", error=last_error)},
        ]
    raise StructuredOutputError(
        model.name,
        attempts,
        completions[-1].text if completions else "",
        last_error,
        sum(c.total_tokens for c in completions),
    )
