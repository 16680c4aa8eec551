"""The layers, read from the source: what each part of the package may import.

- ``strategist/core/`` (pure data and logic) imports only ``core/``, pydantic, numpy, scipy and the
  standard library;
- only ``strategist/models/`` talks to model providers (litellm, openai, llama_cpp);
- only ``strategist/tools/`` imports the ``mcp`` package;
- no two modules of ``strategist`` import each other in a circle, counting the imports a module
  runs when it is loaded, nor through imports inside functions (only ``TYPE_CHECKING`` ones are
  left out).

Every import counts for the first three, lazy ones included: an import inside a function is as
much a dependency as one at the top of the file.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "strategist"
CORE_MAY_IMPORT = {"pydantic", "pydantic_core", "numpy", "scipy", "__future__"}
PROVIDERS = {"litellm", "openai", "llama_cpp"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. strategist.runtime.bot
    target: str  # what it imports, absolute: strategist.models.base, litellm, asyncio
    line: int
    at_load: bool  # runs when the module is loaded (not in a function, not under TYPE_CHECKING)
    annotation_only: bool = False  # under TYPE_CHECKING

    @property
    def top(self) -> str:
        return self.target.split(".")[0]

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(
    node: ast.AST, at_load: bool, typing_only: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, at_load, typing_only
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, False, typing_only)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), False, True)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), at_load, typing_only)
        else:
            yield from _walk(child, at_load, typing_only)


def _imports(modules: dict[str, Path]) -> list[Import]:
    out: list[Import] = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, at_load, typing_only in _walk(ast.parse(path.read_text(encoding="utf-8")), True):
            if isinstance(node, ast.Import):
                out += [Import(name, a.name, node.lineno, at_load, typing_only) for a in node.names]
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # `from . import mcp`, `from .x import y` where y is a module: the module itself.
                sub = f"{source}.{alias.name}"
                out.append(Import(name, sub if sub in modules else source, node.lineno, at_load, typing_only))
    return out


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


MODULES = _modules()
IMPORTS = _imports(MODULES)


def test_the_scan_sees_the_package():
    assert "strategist.core.domain" in MODULES and "strategist.runtime.library" in MODULES
    assert any(i.top == "pydantic" for i in IMPORTS if _in(i.module, "strategist.core"))


def test_core_imports_only_core_pydantic_numpy_scipy_and_the_standard_library():
    allowed = CORE_MAY_IMPORT | set(sys.stdlib_module_names)
    wrong = [
        str(i)
        for i in IMPORTS
        if _in(i.module, "strategist.core")
        and not _in(i.target, "strategist.core")
        and (i.top == "strategist" or i.top not in allowed)
    ]
    assert wrong == []


def test_only_models_import_model_providers():
    wrong = [str(i) for i in IMPORTS if i.top in PROVIDERS and not _in(i.module, "strategist.models")]
    assert wrong == []


def test_only_tools_import_mcp():
    wrong = [str(i) for i in IMPORTS if i.top == "mcp" and not _in(i.module, "strategist.tools")]
    assert wrong == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    edges: dict[str, set[str]] = {}
    for i in IMPORTS:
        if i.at_load and i.target in MODULES and i.target != i.module:
            edges.setdefault(i.module, set()).add(i.target)
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_through_lazy_imports_either():
    """An import inside a function is a dependency too: a circle through one is a circle in the
    design, only hidden (TYPE_CHECKING imports are for annotations and do not count)."""
    edges: dict[str, set[str]] = {}
    for i in IMPORTS:
        if i.target in MODULES and i.target != i.module and not i.annotation_only:
            edges.setdefault(i.module, set()).add(i.target)
    assert _cycles(edges) == []
