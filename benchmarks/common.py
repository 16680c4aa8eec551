"""What the benchmarks share: the machine they ran on, medians with their spread, the table they
print, and the Northwind domain and scenario they run on."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from strategist.core.domain import Domain, Scenario
from strategist.packs import load_domain

NORTHWIND = Path(__file__).resolve().parent.parent / "scenarios" / "northwind"

PACKAGES = ("strategist", "llama-cpp-python", "litellm", "sqlmodel", "sqlalchemy", "pydantic", "httpx")


def machine_info() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "load_average_1m": round(load[0], 2) if load else None,
    }


def machine() -> str:
    m = machine_info()
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    return (
        f"machine: {m['cpus']} cores {m['machine']}, {m['system']}, Python {m['python']}, "
        f"load {m['load_average_1m']}\npackages: {pkgs}"
    )


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def northwind() -> Domain:
    return load_domain(NORTHWIND / "domain.yaml")


def late_refund(domain: Domain, **fields: Any) -> Scenario:
    """The scenario the dialogue benchmarks run: a card refund asked for past the 30-day window."""
    base: dict[str, Any] = {
        "domain": domain.id,
        "title": "Late refund",
        "intent": "refund_late_return",
        "persona": {"mood": "angry"},
        "goal": "Get a card refund for a jacket delivered 45 days ago.",
        "known_facts": ["Order NW-48213"],
        "opening": "I want my money back for this jacket.",
    }
    return Scenario(**{**base, **fields})


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


class Table:
    """A Markdown table, so the printed output can be pasted into benchmarks/README.md."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.rows: list[list[str]] = []

    def add(self, *cells: Any) -> None:
        self.rows.append([fmt(c) for c in cells])

    def render(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


class StatsTable(Table):
    """Measures against their targets: ``add("x", spread(...), "<= 0.1")`` fills in whether it is met."""

    def __init__(self) -> None:
        super().__init__(["measure", "median", "min", "max", "target", "met"])

    def add_stats(self, label: str, stats: dict[str, float], target: str) -> None:
        op, bound = target.split()
        value = stats["median"]
        met = value <= float(bound) if op == "<=" else value >= float(bound)
        self.add(label, stats["median"], stats["min"], stats["max"], target, "yes" if met else "no")
