"""Domains and scenarios: what a support conversation is about and how success is judged."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

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


class SuccessCriteria(BaseModel):
    model_config = ConfigDict(extra="forbid")

    must_say: list[CheckIn] = Field(default_factory=list)
    must_not_say: list[CheckIn] = Field(default_factory=list)
    rubric: list[str] = Field(default_factory=list)

    def merged_with(self, defaults: SuccessCriteria) -> SuccessCriteria:
        """Domain defaults first, then the scenario's own items, without repeats."""

        def merge(a: list[Any], b: list[Any]) -> list[Any]:
            return list(dict.fromkeys([*a, *b]))

        return SuccessCriteria(
            must_say=merge(defaults.must_say, self.must_say),
            must_not_say=merge(defaults.must_not_say, self.must_not_say),
            rubric=merge(defaults.rubric, self.rubric),
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
        return " ".join([self.intent, self.goal, self.opening, *self.known_facts, *self.hidden_facts])


def persona_key(persona: dict[str, str]) -> str:
    return ", ".join(f"{k}={persona[k]}" for k in sorted(persona))
