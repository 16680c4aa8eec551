"""Reading domain packs and scenario sets from YAML. Every problem becomes one InputError that
names the file and the field (or the line, for YAML syntax errors)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .core.domain import Domain, Scenario
from .errors import InputError
from .files import read_yaml, validate

# Shipped packs live in the project's scenarios/ folder; a scenarios/ folder in the current
# directory is searched first so teams can keep their own packs beside their config.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "scenarios"

__all__ = [
    "ScenarioSet",
    "find_pack",
    "load_domain",
    "load_scenario_set",
    "pack_digest",
    "read_yaml",
    "shipped_packs",
]


class ScenarioSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1)
    scenarios: list[Scenario] = Field(min_length=1)


def load_domain(path: str | Path) -> Domain:
    path = Path(path)
    return validate(Domain, read_yaml(path), str(path))


def load_scenario_set(path: str | Path, domain: Domain | None = None) -> tuple[str, list[Scenario]]:
    """Returns (domain id, scenarios). With ``domain``, each scenario is checked against it."""
    path = Path(path)
    sset = validate(ScenarioSet, read_yaml(path), str(path))
    if domain is not None and sset.domain != domain.id:
        raise InputError(str(path), "domain", f"'{sset.domain}' does not match domain '{domain.id}'")
    out = []
    for i, s in enumerate(sset.scenarios):
        if domain is not None:
            for field, problem in s.problems_with(domain):
                raise InputError(str(path), f"scenarios[{i}].{field}", problem)
        out.append(s.model_copy(update={"domain": sset.domain}))
    return sset.domain, out


def find_pack(name_or_path: str) -> Path | None:
    """A domain.yaml for a path (file or folder) or a pack name in ./scenarios or the shipped ones."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir() and (p / "domain.yaml").is_file():
        return p / "domain.yaml"
    for base in (Path("scenarios"), SHIPPED_DIR):
        candidate = base / name_or_path / "domain.yaml"
        if candidate.is_file():
            return candidate
    return None


def pack_digest(path: Path) -> str | None:
    """A digest of the pack's files (domain.yaml and, beside it, scenarios.yaml); None if unreadable."""
    h = hashlib.sha256()
    try:
        h.update(path.read_bytes())
        scenarios = path.parent / "scenarios.yaml"
        if scenarios.is_file():
            h.update(scenarios.read_bytes())
    except OSError:
        return None
    return h.hexdigest()


def shipped_packs() -> list[str]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in SHIPPED_DIR.glob("*/domain.yaml"))
