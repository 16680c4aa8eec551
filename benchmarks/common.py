"""What every benchmark prints: the machine it ran on, and medians with their spread."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from importlib import metadata
from typing import Any

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


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, min and max."""
    return statistics.median(values), min(values), max(values)


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
