"""Evidence from production: how often a strategy was in the prompt of a captured conversation
that the judge found good, or poor (``strategist traffic judge``)."""

from __future__ import annotations

from collections.abc import Mapping


def totals(outcomes: Mapping[int, tuple[int, int]]) -> tuple[int, int]:
    """(good, poor) over every version."""
    return sum(g for g, _ in outcomes.values()), sum(p for _, p in outcomes.values())


def traffic_cell(outcomes: Mapping[int, tuple[int, int]] | None) -> str:
    """The short form for a list: ``5+ 2-``, or ``-`` when no judged conversation used it."""
    if not outcomes:
        return "-"
    good, poor = totals(outcomes)
    return f"{good}+ {poor}-"


def traffic_line(outcomes: Mapping[int, tuple[int, int]] | None, version: int) -> str:
    """One line for a strategy's page."""
    if not outcomes:
        return "in no judged captured conversation yet (strategist traffic judge)"
    good, poor = totals(outcomes)
    text = f"in {good + poor} judged captured conversations: {good} good, {poor} poor"
    if set(outcomes) != {version}:
        g, p = outcomes.get(version, (0, 0))
        text += f" (this version v{version}: {g} good, {p} poor)"
    return text
