"""Review commands: approve, reject, retire, edit, history, export, import, review, audit-ui
(owned by the audit work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app (and to the strategies group)."""
