"""Python functions as tools: the schema comes from the type hints (through pydantic) and the
docstring, the arguments are validated before the call, and the result goes to the model as text
(a string as it is, anything else as JSON)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.json_schema import GenerateJsonSchema

from ..core.tools import ToolSpec
from ..errors import ToolsUnavailableError, format_loc, one_line
from .base import CheckedToolset, LocalEnvironment, ToolCallError, ToolEnvironment, Toolset

ToolFunction = Callable[..., Any]
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI-style APIs accept as a function name
_ARG_SECTIONS = ("args", "arguments", "parameters", "params")
_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Examples?|Notes?|Attributes|See Also)"
    r"\s*:\s*$"
)
_ARG_ITEM = re.compile(r"^\*{0,2}(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a docstring with an optional Google-style
    ``Args:`` section. The description is the text before the first section."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    item_indent: int | None = None
    current: str | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if indent == 0 and _SECTION.match(line.strip()):
            section = line.strip().rstrip(":").strip().lower()
            item_indent, current = None, None
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in _ARG_SECTIONS or not line.strip():
            continue
        if item_indent is None:
            item_indent = indent
        found = _ARG_ITEM.match(line.strip())
        if indent <= item_indent and found:
            current = found.group(1)
            params[current] = found.group(3).strip()
        elif current is not None:
            params[current] = f"{params[current]} {line.strip()}".strip()
    return "\n".join(summary).strip(), params


class _WithoutTitles(GenerateJsonSchema):
    """Field titles ("Order Id") repeat the names and cost a small model's context."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


@dataclass(frozen=True)
class FunctionTool:
    """One function as a tool: its spec, the model that validates its arguments, the function."""

    spec: ToolSpec
    arguments: type[BaseModel]
    function: ToolFunction
    #: Field name in ``arguments`` -> the function's parameter name (fields are renamed so a
    #: parameter may be called anything, e.g. ``json`` or ``model_id``).
    parameters: dict[str, str]

    @classmethod
    def from_function(cls, function: ToolFunction, *, name: str | None = None) -> FunctionTool:
        name = name or str(getattr(function, "__name__", ""))
        if not _TOOL_NAME.match(name):
            raise ValueError(f"a tool needs a name of letters, digits, '_' or '-', got {name!r}")
        description, documented = parse_docstring(inspect.getdoc(function))
        try:
            hints = typing.get_type_hints(function, include_extras=True)
        except Exception as exc:
            raise TypeError(f"tool {name}: cannot read its type hints: {one_line(exc)}") from None
        fields: dict[str, Any] = {}
        parameters: dict[str, str] = {}
        for i, param in enumerate(inspect.signature(function).parameters.values()):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise TypeError(f"tool {name}: parameter {param.name} must be a named parameter")
            default = ... if param.default is param.empty else param.default
            field = Field(default, alias=param.name, description=documented.get(param.name))
            fields[f"p{i}"] = (hints.get(param.name, Any), field)
            parameters[f"p{i}"] = param.name
        model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        schema = model.model_json_schema(schema_generator=_WithoutTitles)
        schema.pop("title", None)
        spec = ToolSpec(name=name, description=description, parameters=schema)
        return cls(spec=spec, arguments=model, function=function, parameters=parameters)


def _validation_problem(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:3]:
        where = format_loc(error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(problems)


class FunctionToolset(CheckedToolset):
    """Python functions (sync or async) as a toolset. Sync functions run in a worker thread so a
    slow one does not hold up other dialogues; past ``call_timeout`` the call is an error result
    (a thread cannot be stopped, so a sync function that never returns keeps its thread)."""

    def __init__(
        self, functions: Iterable[ToolFunction], *, name: str = "python", call_timeout: float | None = 30.0
    ) -> None:
        super().__init__(name=name, call_timeout=call_timeout)
        self.tools: dict[str, FunctionTool] = {}
        for function in functions:
            tool = function if isinstance(function, FunctionTool) else FunctionTool.from_function(function)
            if tool.spec.name in self.tools:
                raise ValueError(f"two tools are named {tool.spec.name}")
            self.tools[tool.spec.name] = tool

    async def list_tools(self) -> list[ToolSpec]:
        return [t.spec for t in self.tools.values()]

    def check_arguments(self, spec: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any]:
        tool = self.tools[spec.name]
        try:
            validated = tool.arguments.model_validate(arguments)
        except ValidationError as exc:
            raise ToolCallError(f"invalid arguments for {spec.name}: {_validation_problem(exc)}") from None
        # Attributes, not model_dump(): a parameter typed as a model receives the model.
        return {param: getattr(validated, field) for field, param in tool.parameters.items()}

    async def invoke(self, spec: ToolSpec, arguments: dict[str, Any]) -> str:
        function = self.tools[spec.name].function
        if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
            getattr(function, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):
            result = await function(**arguments)
        else:
            result = await asyncio.to_thread(function, **arguments)
            if inspect.isawaitable(result):
                result = await result
        if isinstance(result, str):
            return result
        return pydantic_core.to_json(result, fallback=str).decode()


# -- python: "package.module:ATTR" in a domain's tools -------------------------------------------


def load_target(target: str, *, source: str) -> Sequence[ToolFunction] | Callable[[], Any]:
    """The object ``package.module:ATTR`` names: a list of functions or a factory of one."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ToolsUnavailableError(
            source, f"python '{target}': cannot import {module_name}: {one_line(exc)}"
        ) from None
    if not hasattr(module, attr):
        raise ToolsUnavailableError(source, f"python '{target}': {module_name} has no attribute {attr}")
    found = getattr(module, attr)
    if isinstance(found, list | tuple):
        _check_functions(found, target=target, source=source)
        return found
    if callable(found):
        try:
            inspect.signature(found).bind()
        except TypeError:
            raise ToolsUnavailableError(
                source,
                f"python '{target}': expected a list of functions or a factory taking no arguments "
                "that returns one, got a callable that needs arguments",
            ) from None
        except ValueError:  # no signature to inspect (some builtins): try calling it later
            pass
        return cast(Callable[[], Any], found)
    raise ToolsUnavailableError(
        source, f"python '{target}': expected a list of functions or a factory, got {type(found).__name__}"
    )


def _check_functions(found: Any, *, target: str, source: str) -> list[ToolFunction]:
    if not isinstance(found, list | tuple) or not all(callable(f) for f in found):
        raise ToolsUnavailableError(
            source, f"python '{target}': expected a list of functions, got {type(found).__name__}"
        )
    return list(found)


class PythonEnvironment(ToolEnvironment):
    """The tools of ``python: "package.module:ATTR"``: a list of functions is one toolset shared
    by every dialogue; a zero-argument factory is called once per dialogue, for tools with state."""

    def __init__(self, target: str, *, source: str, call_timeout: float | None = 30.0) -> None:
        self.target = target
        self.source = source
        self.name = f"python '{target}'"
        self.call_timeout = call_timeout
        self._local: LocalEnvironment | None = None
        self._closed = False

    def _toolset(self, functions: Any) -> FunctionToolset:
        functions = _check_functions(functions, target=self.target, source=self.source)
        try:
            return FunctionToolset(functions, name=self.name, call_timeout=self.call_timeout)
        except (TypeError, ValueError) as exc:
            raise ToolsUnavailableError(self.source, f"{self.name}: {one_line(exc)}") from None

    def _from_factory(self, factory: Callable[[], Any]) -> Toolset:
        try:
            functions = factory()
        except Exception as exc:
            raise ToolsUnavailableError(
                self.source, f"{self.name}: the factory failed: {type(exc).__name__}: {one_line(exc)}"
            ) from None
        return self._toolset(functions)

    async def start(self) -> None:
        if self._closed:
            raise ToolsUnavailableError(self.source, f"{self.name}: the tool environment is closed")
        if self._local is None:
            found = load_target(self.target, source=self.source)
            if isinstance(found, list | tuple):
                local = LocalEnvironment(self._toolset(found), name=self.name)
            else:
                factory = cast(Callable[[], Any], found)
                local = LocalEnvironment(factory=lambda: self._from_factory(factory), name=self.name)
            await local.start()
            self._local = local

    async def list_tools(self) -> list[ToolSpec]:
        await self.start()
        assert self._local is not None
        return await self._local.list_tools()

    @asynccontextmanager
    async def _session(self, key: str) -> AsyncIterator[Toolset]:
        await self.start()
        assert self._local is not None
        async with self._local.session(key) as toolset:
            yield toolset

    def session(self, key: str) -> AbstractAsyncContextManager[Toolset]:
        return self._session(key)

    async def aclose(self) -> None:
        self._closed = True
        if self._local is not None:
            await self._local.aclose()
