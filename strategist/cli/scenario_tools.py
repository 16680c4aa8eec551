"""``strategist scenarios split`` and ``strategist scenarios import-tau2`` (the eval work)."""

from __future__ import annotations

from .records import scenarios_app


def register() -> None:
    """Commands are added to ``scenarios_app`` (from .records) by the decorators in this module."""
    assert scenarios_app is not None
