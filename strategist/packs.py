"""Reading domain packs and scenario sets from YAML. Every problem becomes one InputError that
names the file and the field (or the line, for YAML syntax errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .core.domain import Domain, Scenario
from .errors import InputError, describe_validation_error

# Shipped packs live in the project's scenarios/ folder; a scenarios/ folder in the current
# directory is searched first so teams can keep their own packs beside their config.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "scenarios"
M = TypeVar("M", bound=BaseModel)


class ScenarioSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1)
    scenarios: list[Scenario] = Field(min_length=1)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), "", f"cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(str(path), where, f"invalid YAML: {problem}") from None
    except RecursionError:
        raise InputError(str(path), "", "invalid YAML: nested too deeply") from None
    except (ValueError, ArithmeticError) as exc:
        # A value YAML recognises but cannot build: 2024-13-45 as a date, '!!int 0x', '!!float abc'.
        raise InputError(str(path), "", f"invalid YAML value: {exc}") from None


def _mapping(path: Path, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InputError(str(path), "", f"expected a mapping at the top level, got {type(data).__name__}")
    return data


def _validate(path: Path, model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise describe_validation_error(str(path), exc) from None
    except (RecursionError, ArithmeticError) as exc:
        # Raised past pydantic by a validator, e.g. re.compile on a regex check like 'a{4294967296}'.
        raise InputError(str(path), "", f"invalid value: {type(exc).__name__}: {exc}") from None


def load_domain(path: str | Path) -> Domain:
    path = Path(path)
    return _validate(path, Domain, _mapping(path, read_yaml(path)))


def load_scenario_set(path: str | Path, domain: Domain | None = None) -> tuple[str, list[Scenario]]:
    """Returns (domain id, scenarios). With ``domain``, each scenario is checked against it."""
    path = Path(path)
    sset = _validate(path, ScenarioSet, _mapping(path, read_yaml(path)))
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


def shipped_packs() -> list[str]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in SHIPPED_DIR.glob("*/domain.yaml"))
