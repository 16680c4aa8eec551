"""The one tool interface: a ``Toolset`` lists tools and calls them; a ``ToolEnvironment`` hands
each dialogue a toolset with a state of its own. Adapters live next to this file.

The contract every toolset keeps: ``call`` never raises for a problem with one call (unknown
tool, bad arguments, the tool failing or timing out): it returns an error result the model sees,
so the model can correct itself. Only tools that cannot be used at all raise
``ToolsUnavailableError``.
"""

from __future__ import annotations

import abc
import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict

from ..core.tools import ToolSpec
from ..errors import ToolsUnavailableError, one_line

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

#: What a toolset accepts as arguments: an object, or its JSON text (as in OpenAI tool calls).
Arguments = Mapping[str, Any] | str


class ToolResult(BaseModel):
    """What one tool call gave back: the text the model sees, and whether it was an error."""

    model_config = ConfigDict(frozen=True)

    content: str
    error: str | None = None
    latency_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_openai(self, tool_call_id: str) -> dict[str, str]:
        """The result as the OpenAI ``tool`` message that answers the call ``tool_call_id``."""
        return {"role": "tool", "tool_call_id": tool_call_id, "content": self.content}

    @classmethod
    def failure(cls, error: str, latency_ms: float = 0.0) -> ToolResult:
        """An error result; the model sees ``Error: <error>``."""
        content = error if error.lower().startswith("error") else f"Error: {error}"
        return cls(content=content, error=error, latency_ms=latency_ms)


class ToolCallError(Exception):
    """Raised inside a toolset to end one call with an error result carrying this message."""


class _Closing(abc.ABC):
    """What toolsets and environments share: a name for messages, and ``async with`` closes."""

    #: Where the tools come from, for messages: a pack name, ``module:ATTR``, a server command.
    name: str = "tools"

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release what it holds. Safe to call twice."""

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Toolset(_Closing):
    """A set of tools one dialogue uses."""

    @abc.abstractmethod
    async def list_tools(self) -> list[ToolSpec]:
        """The tools the model may call."""

    @abc.abstractmethod
    async def call(self, name: str, arguments: Arguments) -> ToolResult:
        """Call one tool. Never raises for a problem with this call; see the module docstring."""

    async def aclose(self) -> None:  # most toolsets hold nothing
        """Release what the toolset holds. Safe to call twice."""

    async def __aenter__(self) -> Self:
        return self


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """The arguments of a call as a dict; a JSON string is parsed. Raises ToolCallError."""
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ToolCallError(f"the arguments are not valid JSON: {exc.msg}") from None
    if not isinstance(arguments, Mapping):
        raise ToolCallError(f"the arguments must be a JSON object, not {type(arguments).__name__}")
    return dict(arguments)


def _schema_validator(schema: Mapping[str, Any]) -> Validator | None:
    """A compiled validator for a tool's schema, or None when the schema itself is invalid (the
    tool then validates its own arguments)."""
    from jsonschema import exceptions, validators

    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError:
        return None
    return cls(schema)


def schema_problem(validator: Validator, arguments: Mapping[str, Any]) -> str | None:
    """The most relevant way ``arguments`` break the schema, naming the field; None if valid."""
    from jsonschema import exceptions

    error = exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


class CheckedToolset(Toolset):
    """A toolset that keeps the ``call`` contract for its subclasses: it looks the tool up,
    parses and checks the arguments against the tool's schema, applies the timeout, times the
    call and turns every failure into an error result. Subclasses implement ``list_tools`` and
    ``invoke``."""

    def __init__(self, *, name: str = "tools", call_timeout: float | None = 30.0) -> None:
        self.name = name
        self.call_timeout = call_timeout
        self._validators: dict[str, Validator | None] = {}

    @abc.abstractmethod
    async def invoke(self, spec: ToolSpec, arguments: dict[str, Any]) -> str:
        """Run the tool on checked arguments; return the text the model sees. Raise
        ToolCallError (or anything else) to end the call with an error result."""

    def check_arguments(self, spec: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate the arguments (JSON schema by default); raise ToolCallError if invalid."""
        if spec.name not in self._validators:
            self._validators[spec.name] = _schema_validator(spec.parameters)
        validator = self._validators[spec.name]
        problem = schema_problem(validator, arguments) if validator is not None else None
        if problem is not None:
            raise ToolCallError(f"invalid arguments for {spec.name}: {problem}")
        return arguments

    async def call(self, name: str, arguments: Arguments) -> ToolResult:
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        specs = {s.name: s for s in await self.list_tools()}
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            return ToolResult.failure(f"unknown tool '{name}'; the tools are: {known}", elapsed())
        try:
            checked = self.check_arguments(spec, parse_arguments(arguments))
        except ToolCallError as exc:
            return ToolResult.failure(str(exc), elapsed())
        deadline = asyncio.timeout(self.call_timeout)
        try:
            async with deadline:
                content = await self.invoke(spec, checked)
        except ToolsUnavailableError:
            raise
        except ToolCallError as exc:
            return ToolResult.failure(str(exc), elapsed())
        except TimeoutError as exc:
            if deadline.expired():
                return ToolResult.failure(f"{name} did not answer within {self.call_timeout:g} s", elapsed())
            return ToolResult.failure(f"{name} failed: {one_line(exc)}", elapsed())
        except Exception as exc:
            return ToolResult.failure(f"{name} failed: {type(exc).__name__}: {one_line(exc)}", elapsed())
        return ToolResult(content=content, latency_ms=elapsed())


class CombinedToolset(Toolset):
    """Several toolsets as one; each call goes to the toolset that has the tool."""

    def __init__(self, toolsets: Sequence[Toolset], *, name: str = "tools") -> None:
        self.name = name
        self.toolsets = list(toolsets)
        self._routes: dict[str, Toolset] | None = None
        self._specs: list[ToolSpec] = []

    async def list_tools(self) -> list[ToolSpec]:
        if self._routes is None:
            routes: dict[str, Toolset] = {}
            specs: list[ToolSpec] = []
            for toolset in self.toolsets:
                for spec in await toolset.list_tools():
                    if spec.name in routes:
                        owner = routes[spec.name].name
                        raise ToolsUnavailableError(
                            self.name, f"tool '{spec.name}' is given by both {owner} and {toolset.name}"
                        )
                    routes[spec.name] = toolset
                    specs.append(spec)
            self._routes, self._specs = routes, specs
        return list(self._specs)

    async def call(self, name: str, arguments: Arguments) -> ToolResult:
        await self.list_tools()
        assert self._routes is not None
        toolset = self._routes.get(name)
        if toolset is None:
            known = ", ".join(sorted(self._routes)) or "none"
            return ToolResult.failure(f"unknown tool '{name}'; the tools are: {known}")
        return await toolset.call(name, arguments)

    async def aclose(self) -> None:
        for toolset in self.toolsets:
            await toolset.aclose()


class ToolEnvironment(_Closing):
    """Where a domain's tools live. Each dialogue opens a ``session`` and gets a toolset whose
    state no other dialogue sees."""

    name: str = "tools"

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect or start what the tools need. Idempotent; ``list_tools`` and ``session``
        call it too. Raises ToolsUnavailableError."""

    @abc.abstractmethod
    async def list_tools(self) -> list[ToolSpec]:
        """The tools the model sees (hidden tools and injected arguments left out)."""

    @abc.abstractmethod
    def session(self, key: str) -> AbstractAsyncContextManager[Toolset]:
        """A toolset for one dialogue. ``key`` names the dialogue and must be unique among the
        sessions open at once (e.g. run id + scenario id + repeat)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop everything the environment started. Safe to call twice."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self


ToolsetFactory = Callable[[], Toolset]


class LocalEnvironment(ToolEnvironment):
    """Tools in this process: one ``toolset`` shared by every dialogue (stateless tools), or a
    ``factory`` called once per dialogue (tools with state)."""

    def __init__(
        self, toolset: Toolset | None = None, *, factory: ToolsetFactory | None = None, name: str = "tools"
    ) -> None:
        if (toolset is None) == (factory is None):
            raise ValueError("give exactly one of toolset or factory")
        self.name = name
        self._shared = toolset
        self._factory = factory
        self._specs: list[ToolSpec] | None = None
        self._closed = False

    async def start(self) -> None:
        if self._closed:
            raise ToolsUnavailableError(self.name, "the tool environment is closed")
        if self._specs is None:
            if self._shared is not None:
                self._specs = await self._shared.list_tools()
            else:
                # One toolset made up front tells the tools every session will have.
                async with self._new_toolset() as probe:
                    self._specs = await probe.list_tools()

    async def list_tools(self) -> list[ToolSpec]:
        await self.start()
        return list(self._specs or [])

    def _new_toolset(self) -> Toolset:
        assert self._factory is not None
        return self._factory()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[Toolset]:
        await self.start()
        if self._shared is not None:
            yield self._shared
            return
        async with self._new_toolset() as toolset:
            yield toolset

    def session(self, key: str) -> AbstractAsyncContextManager[Toolset]:
        return self._session()

    async def aclose(self) -> None:
        self._closed = True
        if self._shared is not None:
            await self._shared.aclose()


class CombinedEnvironment(ToolEnvironment):
    """Several environments as one (an MCP server and Python functions); tool names must not clash."""

    def __init__(self, environments: Sequence[ToolEnvironment], *, source: str = "tools") -> None:
        self.name = source
        self.environments = list(environments)
        self._specs: list[ToolSpec] | None = None

    async def start(self) -> None:
        if self._specs is not None:
            return
        owners: dict[str, str] = {}
        specs: list[ToolSpec] = []
        for env in self.environments:
            for spec in await env.list_tools():
                if spec.name in owners:
                    raise ToolsUnavailableError(
                        self.name, f"tool '{spec.name}' is given by both {owners[spec.name]} and {env.name}"
                    )
                owners[spec.name] = env.name
                specs.append(spec)
        self._specs = specs

    async def list_tools(self) -> list[ToolSpec]:
        await self.start()
        return list(self._specs or [])

    @asynccontextmanager
    async def _session(self, key: str) -> AsyncIterator[Toolset]:
        await self.start()
        async with AsyncExitStack() as stack:
            toolsets = [await stack.enter_async_context(env.session(key)) for env in self.environments]
            yield CombinedToolset(toolsets, name=self.name)

    def session(self, key: str) -> AbstractAsyncContextManager[Toolset]:
        return self._session(key)

    async def aclose(self) -> None:
        for env in self.environments:
            await env.aclose()
