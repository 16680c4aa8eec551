"""Reading the files users hand to strategist (domain packs, scenario sets, library files, task
folders): size limits, YAML with line numbers, and validation, each problem one InputError that
names the file, the line where known, and the field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import InputError, format_loc

# Packs and libraries are hand-sized text; a file past this is a mistake (or an attack on memory).
MAX_FILE_BYTES = 16 * 1024 * 1024

M = TypeVar("M", bound=BaseModel)


def read_text(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> str:
    source = str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(
                source, "", f"the file is {size / 2**20:.1f} MiB; at most {max_bytes / 2**20:.0f} MiB is read"
            )
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(source, "", "file not found") from None
    except IsADirectoryError:
        raise InputError(source, "", "is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(source, "", f"cannot read: {exc}") from None


@dataclass
class Locator:
    """Maps a path in the parsed data (``("strategies", 2, "status")``) to a line of the file."""

    root: yaml.Node | None

    def line(self, path: Sequence[Any]) -> int:
        node = self.root
        if node is None:
            return 1
        for part in path:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if k.value == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = node.value[part]
            if child is None:
                break  # a missing field: point at the mapping that lacks it
            node = child
        return node.start_mark.line + 1

    def error(self, source: str, loc: Sequence[Any], problem: str) -> InputError:
        return InputError(source, f"line {self.line(loc)}: {format_loc(loc)}", problem)


def parse_yaml(text: str, source: str) -> tuple[Any, Locator]:
    """The data of a YAML text and a locator for its lines."""
    try:
        data = yaml.safe_load(text)
        where = Locator(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(source, line, f"invalid YAML: {problem}") from None
    except RecursionError:
        raise InputError(source, "", "invalid YAML: nested too deeply") from None
    except (ValueError, ArithmeticError) as exc:
        # A value YAML recognises but cannot build: 2024-13-45 as a date, '!!int 0x', '!!float abc'.
        raise InputError(source, "", f"invalid YAML value: {exc}") from None
    return data, where


def read_yaml(path: Path) -> Any:
    return parse_yaml(read_text(path), str(path))[0]


def validate(model: type[M], data: Any, source: str, where: Locator | None = None) -> M:
    """``data`` as ``model``; the first problem as one InputError (with its line if ``where``)."""
    if not isinstance(data, dict):
        kind = "nothing" if data is None else type(data).__name__
        where_text = "line 1" if where else ""
        raise InputError(source, where_text, f"expected a mapping at the top level, got {kind}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc, msg = first.get("loc", ()), first.get("msg", "invalid")
        raise (where.error(source, loc, msg) if where else InputError(source, format_loc(loc), msg)) from None
    except (RecursionError, ArithmeticError) as exc:
        # Raised past pydantic by a validator, e.g. re.compile on a regex check like 'a{4294967296}'.
        raise InputError(source, "", f"invalid value: {type(exc).__name__}: {exc}") from None


def load_yaml_model(path: Path, model: type[M], *, lines: bool = False) -> M:
    """Read, parse and validate a YAML file in one step."""
    text = read_text(path)
    data, where = parse_yaml(text, str(path))
    return validate(model, data, str(path), where if lines else None)
