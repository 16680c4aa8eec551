"""Tools for tests, shipped in the package so users can test their own bots offline.

``ScriptedToolset`` takes tool specs (``ToolSpec`` or OpenAI tool dicts, e.g. copied from a real
server's listing) and a Python handler per tool, checks each call's arguments against the spec
like a real toolset does, and records every call with its result. For one toolset per dialogue,
wrap a factory: ``LocalEnvironment(factory=lambda: ScriptedToolset(...))``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic_core

from ..core.tools import ToolSpec
from .base import Arguments, CheckedToolset, ToolCallError, ToolResult

#: A handler gets the call's arguments and returns the result (text as is, anything else as
#: JSON), sync or async; raising makes an error result. A value that is not callable is the
#: result of every call (an exception is raised by every call).
Handler = Callable[[dict[str, Any]], Any] | Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass
class ToolCall:
    """One recorded call: what was asked and what came back."""

    name: str
    arguments: Arguments
    result: ToolResult


class ScriptedToolset(CheckedToolset):
    """Tool specs answered by Python handlers; ``calls`` records every call, in order."""

    def __init__(
        self,
        specs: Iterable[ToolSpec | Mapping[str, Any]],
        handlers: Mapping[str, Handler | Any] | None = None,
        *,
        name: str = "scripted",
        call_timeout: float | None = 30.0,
    ) -> None:
        super().__init__(name=name, call_timeout=call_timeout)
        self.specs = [s if isinstance(s, ToolSpec) else ToolSpec.from_openai(s) for s in specs]
        self.handlers: dict[str, Any] = dict(handlers or {})
        self.calls: list[ToolCall] = []

    def on(self, name: str, handler: Handler | Any) -> None:
        """Answer calls to ``name`` with ``handler`` from now on."""
        self.handlers[name] = handler

    def calls_to(self, name: str) -> list[ToolCall]:
        return [c for c in self.calls if c.name == name]

    async def list_tools(self) -> list[ToolSpec]:
        return list(self.specs)

    async def call(self, name: str, arguments: Arguments) -> ToolResult:
        result = await super().call(name, arguments)
        self.calls.append(ToolCall(name=name, arguments=arguments, result=result))
        return result

    async def invoke(self, spec: ToolSpec, arguments: dict[str, Any]) -> str:
        if spec.name not in self.handlers:
            raise ToolCallError(f"no scripted handler for {spec.name}")
        handler = self.handlers[spec.name]
        if isinstance(handler, BaseException):
            raise handler
        result = handler(arguments) if callable(handler) else handler
        if inspect.isawaitable(result):
            result = await result
        return result if isinstance(result, str) else pydantic_core.to_json(result, fallback=str).decode()
