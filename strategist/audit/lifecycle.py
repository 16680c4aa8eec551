"""The review lifecycle of a strategy, as pure rules.

pending -> approved | rejected; approved -> retired. Editing makes a new version and sends an
approved strategy back to pending unless the editor approves it in the same action. Every action
names the version and status the reviewer saw, so two reviewers acting on the same version
cannot overwrite each other (the store checks both in one UPDATE).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import StrategistError

Status = Literal["pending", "approved", "rejected", "retired"]
Action = Literal["approve", "reject", "retire", "edit"]
STATUSES: tuple[Status, ...] = ("pending", "approved", "rejected", "retired")
ACTIONS: tuple[Action, ...] = ("approve", "reject", "retire", "edit")
TEXT_FIELDS = ("trigger", "guidance", "example")

# What a review record calls each action (the past tense reads well in a history).
RECORDED = {"approve": "approved", "reject": "rejected", "retire": "retired", "edit": "edited"}
_FROM: dict[str, tuple[str, ...]] = {
    "approve": ("pending",),
    "reject": ("pending",),
    "retire": ("approved",),
    "edit": ("pending", "approved"),
}


class TransitionError(StrategistError):
    """The action is not allowed from the strategy's status (e.g. retiring a pending strategy)."""


class ConflictError(StrategistError):
    """Someone else changed the strategy since the reviewer looked at it; nothing was written."""


@dataclass(frozen=True)
class Text:
    """The reviewable words of one version of a strategy."""

    trigger: str
    guidance: str
    example: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"trigger": self.trigger, "guidance": self.guidance, "example": self.example}

    def changed_fields(self, other: Text) -> list[str]:
        return [f for f in TEXT_FIELDS if getattr(self, f) != getattr(other, f)]


def clean_text(trigger: str, guidance: str, example: str = "") -> Text:
    """Trim surrounding whitespace; a strategy needs a trigger and guidance."""
    text = Text(trigger.strip(), guidance.strip(), example.strip())
    for name in ("trigger", "guidance"):
        if not getattr(text, name):
            raise TransitionError(f"{name} must not be empty")
    return text


def next_status(action: Action, status: str, *, approve: bool = False, strategy_id: int | None = None) -> str:
    """The status after ``action`` on a strategy in ``status``; TransitionError if not allowed."""
    allowed = _FROM[action]
    if status not in allowed:
        who = f"strategy {strategy_id}" if strategy_id is not None else "the strategy"
        only = " or ".join(allowed)
        raise TransitionError(f"{who} is {status}; only {only} strategies can be {RECORDED[action]}")
    if action == "edit":
        return "approved" if approve else "pending"
    return {"approve": "approved", "reject": "rejected", "retire": "retired"}[action]


def note_required(action: Action) -> bool:
    """Saying no, or taking a strategy out of use, needs a reason in the trail."""
    return action in ("reject", "retire")


def default_reviewer(
    env: Mapping[str, str] | None = None, git_name: Callable[[], str | None] | None = None
) -> str:
    """Who is reviewing: ``git config user.name``, else $USER, else 'unknown'."""
    env = os.environ if env is None else env
    name = (git_name or _git_user_name)()
    if name:
        return name
    return env.get("USER") or env.get("USERNAME") or "unknown"


def _git_user_name() -> str | None:
    try:
        out = subprocess.run(
            ["git", "config", "user.name"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@dataclass(frozen=True)
class ReviewRequest:
    """One review action. ``seen_version``/``seen_status`` are what the reviewer looked at;
    None means "whatever is current now" (the CLI reads it when the command starts)."""

    strategy_id: int
    action: Action
    reviewer: str
    note: str = ""
    seen_version: int | None = None
    seen_status: str | None = None
    text: Text | None = None  # the new words, for "edit"
    approve: bool = False  # "edit" only: approve the new version in the same action
    recorded_as: str | None = None  # overrides the action name in the trail (e.g. "imported")


def action_between(status: str, target: str) -> Action | None:
    """The one action that takes ``status`` to ``target`` without an edit, if there is one."""
    status_actions: tuple[Action, ...] = ("approve", "reject", "retire")
    for action in status_actions:
        if status in _FROM[action] and next_status(action, status) == target:
            return action
    return None
