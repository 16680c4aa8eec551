"""``strategist chat`` and ``strategist serve`` (owned by the inference work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
