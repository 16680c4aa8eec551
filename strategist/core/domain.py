"""Domains and scenarios: what a support conversation is about and how success is judged."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from .dialogue import Turn
from .tools import ToolsConfig

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
Difficulty = Literal["easy", "medium", "hard"]
Origin = Literal["generated", "imported", "harvested"]
Split = Literal["train", "dev", "test"]
DEFAULT_STOP_MARKER = "###STOP###"


class Check(BaseModel):
    """A deterministic check on the agent's words: a literal phrase (case-insensitive) or a regex."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None = None
    regex: str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _one_of(self) -> Check:
        if (self.text is None) == (self.regex is None):
            raise ValueError("give exactly one of 'text' or 'regex'")
        if self.text is not None and not self.text.strip():
            raise ValueError("'text' must not be empty")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from exc
            except (OverflowError, RecursionError):
                raise ValueError("invalid regex: too large or nested too deeply") from None
        return self

    @property
    def label(self) -> str:
        return self.description or self.text or f"/{self.regex}/"

    def found_in(self, text: str) -> bool:
        if self.text is not None:
            return " ".join(self.text.lower().split()) in " ".join(text.lower().split())
        return re.search(self.regex or "", text, re.IGNORECASE | re.MULTILINE) is not None


def _check_from_str(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


CheckIn = Annotated[Check, BeforeValidator(_check_from_str)]


class ActionCheck(BaseModel):
    """A tool call the agent must make (``actions``) or must not make (``forbidden_actions``): the
    tool's name and the arguments that must match; arguments not listed may be anything."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    @property
    def label(self) -> str:
        if self.description:
            return self.description
        args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in self.arguments.items())
        return f"{self.name}({args})"

    def matches(self, name: str, arguments: dict[str, Any] | None) -> bool:
        if name != self.name:
            return False
        if not self.arguments:
            return True
        if arguments is None:
            return False
        return all(k in arguments and same_value(v, arguments[k]) for k, v in self.arguments.items())


def same_value(expected: Any, actual: Any) -> bool:
    """Argument equality as a grader means it: numbers by value (1 == 1.0), objects key by key,
    and lists of plain values in any order (item ids); everything else exactly."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual if isinstance(expected, bool) and isinstance(actual, bool) else False
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return abs(float(expected) - float(actual)) <= 1e-9 * max(1.0, abs(float(expected)))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(same_value(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return False
        if all(not isinstance(v, dict | list) for v in [*expected, *actual]):
            return sorted(map(json.dumps, expected)) == sorted(map(json.dumps, actual))
        return all(same_value(a, b) for a, b in zip(expected, actual, strict=True))
    return bool(expected == actual)


def _action_from_str(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


ActionIn = Annotated[ActionCheck, BeforeValidator(_action_from_str)]


class SuccessCriteria(BaseModel):
    model_config = ConfigDict(extra="forbid")

    must_say: list[CheckIn] = Field(default_factory=list)
    must_not_say: list[CheckIn] = Field(default_factory=list)
    rubric: list[str] = Field(default_factory=list)
    # Tool calls: the expected ones (in any order unless ordered_actions) and the forbidden ones.
    actions: list[ActionIn] = Field(default_factory=list)
    forbidden_actions: list[ActionIn] = Field(default_factory=list)
    ordered_actions: bool = False

    def merged_with(self, defaults: SuccessCriteria) -> SuccessCriteria:
        """Domain defaults first, then the scenario's own items, without repeats."""

        def merge(a: list[Any], b: list[Any]) -> list[Any]:
            seen: dict[str, Any] = {}
            for item in [*a, *b]:
                seen.setdefault(item if isinstance(item, str) else item.model_dump_json(), item)
            return list(seen.values())

        return SuccessCriteria(
            must_say=merge(defaults.must_say, self.must_say),
            must_not_say=merge(defaults.must_not_say, self.must_not_say),
            rubric=merge(defaults.rubric, self.rubric),
            actions=merge(defaults.actions, self.actions),
            forbidden_actions=merge(defaults.forbidden_actions, self.forbidden_actions),
            ordered_actions=self.ordered_actions or defaults.ordered_actions,
        )


class Intent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Slug
    description: str = Field(min_length=1)


class Domain(BaseModel):
    """A domain pack: the company, the agent's role and policy, and the space of customers."""

    model_config = ConfigDict(extra="forbid")

    id: Slug
    name: str = Field(min_length=1)
    company: str = Field(min_length=1)
    agent_role: str = Field(min_length=1)
    policy: str = Field(min_length=1)
    persona_dimensions: dict[str, list[str]] = Field(min_length=1)
    intents: list[Intent] = Field(min_length=1)
    success_criteria: SuccessCriteria = Field(default_factory=SuccessCriteria)
    max_turns: int = Field(default=6, ge=1, le=50)
    stop_marker: str = Field(default=DEFAULT_STOP_MARKER, min_length=3)
    tools: ToolsConfig | None = None

    @field_validator("persona_dimensions")
    @classmethod
    def _dimensions(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, values in v.items():
            if not values:
                raise ValueError(f"dimension '{name}' needs at least one value")
        return v

    @field_validator("intents")
    @classmethod
    def _unique_intents(cls, v: list[Intent]) -> list[Intent]:
        ids = [i.id for i in v]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate intent id: {dupes[0]}")
        return v

    def intent(self, intent_id: str) -> Intent:
        for i in self.intents:
            if i.id == intent_id:
                return i
        raise KeyError(intent_id)


class Scenario(BaseModel):
    """One customer situation: who they are, what they want, what they know and when it is solved."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = None
    domain: str = ""
    # What makes two scenarios of a domain the same one when importing (default: the title).
    key: str | None = Field(default=None, min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=200)
    intent: str = Field(min_length=1)
    persona: dict[str, str] = Field(default_factory=dict)
    goal: str = Field(min_length=1)
    known_facts: list[str] = Field(default_factory=list)
    hidden_facts: list[str] = Field(default_factory=list)
    opening: str = Field(min_length=1)
    success: SuccessCriteria = Field(default_factory=SuccessCriteria)
    difficulty: Difficulty = "medium"
    origin: Origin = "imported"
    split: Split = "train"
    max_turns: int | None = Field(default=None, ge=1, le=50)
    # A harvested scenario replays the conversation up to where the agent went wrong: these turns
    # (customer, agent replies, tool steps) open every dialogue, and ``opening`` is their first
    # customer message. ``max_turns`` then counts the agent turns after them.
    prefix: list[Turn] = Field(default_factory=list)
    # Where a harvested scenario came from: {"kind": "dialogue" | "transcript" | "traffic", ids}.
    source: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _prefix_shape(self) -> Scenario:
        if self.prefix:
            if self.prefix[0].role != "customer" or self.prefix[-1].role != "customer":
                raise ValueError("prefix: must begin and end with a customer turn")
            if self.prefix[0].content != self.opening:
                raise ValueError("prefix: its first customer turn must be the opening")
        return self

    def problems_with(self, domain: Domain) -> list[tuple[str, str]]:
        """(field, problem) pairs where this scenario does not fit its domain."""
        out: list[tuple[str, str]] = []
        if self.intent not in {i.id for i in domain.intents}:
            out.append(("intent", f"unknown intent '{self.intent}' for domain '{domain.id}'"))
        for key, value in self.persona.items():
            allowed = domain.persona_dimensions.get(key)
            if allowed is None:
                out.append((f"persona.{key}", f"unknown persona dimension '{key}'"))
            elif value not in allowed:
                out.append((f"persona.{key}", f"'{value}' is not one of {allowed}"))
        return out

    def criteria(self, domain: Domain) -> SuccessCriteria:
        return self.success.merged_with(domain.success_criteria)

    def turns_limit(self, domain: Domain) -> int:
        return self.max_turns or domain.max_turns

    @property
    def cell(self) -> tuple[str, str]:
        """The persona x intent cell this scenario covers (persona as a stable string)."""
        return persona_key(self.persona), self.intent

    @property
    def stable_key(self) -> str:
        return " ".join((self.key or self.title).split()).casefold()

    def fingerprint_text(self) -> str:
        replayed = [t.content for t in self.prefix[1:] if t.role == "customer" or t.is_reply]
        return " ".join(
            [self.intent, self.goal, self.opening, *replayed, *self.known_facts, *self.hidden_facts]
        )

    @property
    def opening_turns(self) -> list[Turn]:
        """The turns every dialogue of this scenario starts with."""
        return [t.model_copy() for t in self.prefix] or [Turn(role="customer", content=self.opening)]


def persona_key(persona: dict[str, str]) -> str:
    return ", ".join(f"{k}={persona[k]}" for k in sorted(persona))
