"""Tools from an MCP server, over stdio (a ``command``) or streamable HTTP (a ``url``), through
the official ``mcp`` SDK. This is the only module that imports ``mcp``, and only when a server is
used: importing the SDK costs about a second.

The SDK's transports and ``ClientSession`` are anyio context managers that must be entered and
left in one task. Each connection therefore lives in a background task of its own that enters
them, says it is ready, and leaves them when told to close; calls may come from any task in the
same event loop.

Isolation (``McpServerConfig.isolation``) decides what a dialogue's ``session()`` gets:

- ``process``: a server process of its own, stopped when the dialogue ends.
- ``reset``: a connection from a pool (grown on demand, never shared by two dialogues at once),
  on which ``reset_tool`` is called first.
- ``argument``: the one shared connection; every call carries the dialogue's key as
  ``state_argument``, which the model's schemas do not show.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from ..core.tools import STATE_DIR_PLACEHOLDER, McpServerConfig, ToolSpec
from ..errors import ToolsUnavailableError, one_line
from .base import CheckedToolset, ToolCallError, ToolEnvironment, Toolset

if TYPE_CHECKING:
    import anyio
    import mcp

_CLOSE_TIMEOUT = 15.0  # the SDK's own stdio shutdown takes at most ~6 s (close stdin, TERM, KILL)
_TIMEOUT_GRACE = 2.0  # the SDK's per-request timeout fires first; ours only guards a stuck write
_MAX_PAGES = 100  # of a paginated tool listing


def _version() -> str:
    try:
        return importlib.metadata.version("strategist")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _tail_line(log: IO[bytes]) -> str:
    """The last non-empty line a server wrote to its stderr."""
    try:
        log.flush()
        size = log.seek(0, 2)
        log.seek(max(0, size - 4096))
        lines = log.read().decode("utf-8", "replace").splitlines()
    except (OSError, ValueError):
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def _find_command(command: str) -> str:
    """A bare command name is looked up on PATH, then beside the running Python: a tool server
    installed into strategist's own virtual environment is found when that is not activated."""
    if os.sep in command or shutil.which(command):
        return command
    beside = Path(sys.executable).parent / command
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else command


class _Connection:
    """One client connection to the server, owned by a background task."""

    def __init__(self, config: McpServerConfig, *, source: str, label: str) -> None:
        self.config = config
        self.source = source
        self.label = label
        self.tools: list[mcp.types.Tool] = []
        self._session: mcp.ClientSession | None = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None  # why it could not start, or why it stopped
        self._stderr: IO[bytes] | None = None
        self._startup: anyio.CancelScope | None = None
        self._state_dir: str | None = None

    @property
    def alive(self) -> bool:
        return self._session is not None and not self._closing.is_set() and self._failure is None

    def _unavailable(self, problem: str) -> ToolsUnavailableError:
        return ToolsUnavailableError(self.source, f"{self.label}: {problem}")

    async def open(self) -> None:
        """Start the owner task and wait until the server has listed its tools."""
        self._task = asyncio.create_task(self._own(), name=f"strategist tools: {self.label}")
        await self._ready.wait()
        if self._failure is not None:
            await self.aclose()
            raise self._unavailable(self._failure)

    def _environment(self) -> dict[str, str]:
        env = dict(self.config.env)
        if any(STATE_DIR_PLACEHOLDER in v for v in env.values()):
            self._state_dir = tempfile.mkdtemp(prefix="strategist-tools-")
            env = {k: v.replace(STATE_DIR_PLACEHOLDER, self._state_dir) for k, v in env.items()}
        return env

    async def _transport(self, stack: AsyncExitStack) -> tuple[Any, Any]:
        if self.config.command is not None:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            command, *args = self.config.command
            command = _find_command(command)
            params = StdioServerParameters(
                command=command, args=args, env=self._environment(), cwd=self.config.cwd
            )
            # stderr goes to a file (the SDK hands it to the process as is) so a server that
            # exits at start can be quoted; binary so its tail can be read with seek().
            self._stderr = tempfile.TemporaryFile("w+b")  # noqa: SIM115 - closed when the task ends
            return await stack.enter_async_context(stdio_client(params, errlog=cast(Any, self._stderr)))
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        # The SDK's defaults for MCP over HTTP: 30 s to connect or write, 300 s between reads.
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=self.config.headers, timeout=httpx2.Timeout(30.0, read=300.0))
        )
        assert self.config.url is not None
        return await stack.enter_async_context(streamable_http_client(self.config.url, http_client=http))

    async def _own(self) -> None:
        import anyio
        from mcp import ClientSession
        from mcp.types import Implementation

        phase = "start"
        try:
            async with AsyncExitStack() as stack:
                read, write = await self._transport(stack)
                session = await stack.enter_async_context(
                    ClientSession(
                        read, write, client_info=Implementation(name="strategist", version=_version())
                    )
                )
                # aclose() cancels this scope when asked to close before the server is ready.
                with anyio.fail_after(self.config.startup_timeout) as self._startup:
                    phase = "initialize"
                    await session.initialize()
                    phase = "list its tools"
                    self.tools = await self._list(session)
                if self._closing.is_set():
                    self._failure = "closed before it was ready"
                    return
                if not self.tools:
                    self._failure = "lists no tools"
                    return
                self._session = session
                self._ready.set()
                await self._closing.wait()
        except asyncio.CancelledError:
            self._failure = self._failure or "closed"
            raise
        except BaseException as exc:
            self._failure = self._failure or self._describe(_leaf(exc), phase)
        finally:
            self._session = None
            self._ready.set()
            if self._stderr is not None:
                self._stderr.close()
            if self._state_dir is not None:
                shutil.rmtree(self._state_dir, ignore_errors=True)

    @staticmethod
    async def _list(session: mcp.ClientSession) -> list[mcp.types.Tool]:
        from mcp.types import PaginatedRequestParams

        listing = await session.list_tools()
        tools = list(listing.tools)
        for _ in range(_MAX_PAGES):
            if not listing.next_cursor:
                break
            listing = await session.list_tools(params=PaginatedRequestParams(cursor=listing.next_cursor))
            tools.extend(listing.tools)
        return tools

    def _describe(self, exc: BaseException, phase: str) -> str:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED

        if isinstance(exc, TimeoutError) and phase != "start":
            return f"did not {phase} within {self.config.startup_timeout:g} s"
        if isinstance(exc, MCPError) and exc.error.code == CONNECTION_CLOSED and phase != "start":
            if self.config.command is None:
                return f"closed the connection at start ({phase})"
            said = _tail_line(self._stderr) if self._stderr is not None else ""
            return f"exited at start: {said}" if said else "exited at start"
        if isinstance(exc, OSError) and self.config.command is not None and phase == "start":
            return f"cannot start: {exc.strerror or one_line(exc)}"
        if type(exc).__module__.startswith("httpx"):
            return f"cannot connect: {one_line(exc)}"
        if isinstance(exc, MCPError):
            return f"failed to {phase}: {exc.error.message}"
        return f"failed to {phase}: {type(exc).__name__}: {one_line(exc)}"

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float
    ) -> mcp.types.CallToolResult:
        """One tools/call. A dead connection is ToolsUnavailableError; any other failure of this
        one call is ToolCallError."""
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        session = self._session
        if session is None or not self.alive:
            raise self._unavailable(f"the connection is closed ({self._failure or 'closed'})")
        try:
            return await session.call_tool(name, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.error.code == CONNECTION_CLOSED:
                self._failure = "the server closed the connection"
                raise self._unavailable(self._failure) from None
            if exc.error.code == REQUEST_TIMEOUT:
                raise ToolCallError(f"{name} did not answer within {timeout:g} s") from None
            raise ToolCallError(f"{name} failed: {exc.error.message}") from None

    async def aclose(self) -> None:
        self._closing.set()
        if self._startup is not None and not self._ready.is_set():
            self._startup.cancel()
        task = self._task
        if task is None or task.done():
            return
        try:
            # Shielded: a caller cancelled while closing must not stop the shutdown halfway.
            await asyncio.wait_for(asyncio.shield(task), _CLOSE_TIMEOUT)
        except TimeoutError:
            task.cancel()  # the SDK's shutdown is bounded; this is the last resort


def _visible_schema(schema: Mapping[str, Any], hidden_argument: str | None) -> dict[str, Any]:
    out = copy.deepcopy(dict(schema))
    if hidden_argument is None:
        return out
    properties = out.get("properties")
    if isinstance(properties, dict):
        properties.pop(hidden_argument, None)
    required = out.get("required")
    if isinstance(required, list) and hidden_argument in required:
        out["required"] = [r for r in required if r != hidden_argument]
    return out


def _takes(tool: mcp.types.Tool, argument: str) -> bool:
    properties = tool.input_schema.get("properties")
    return isinstance(properties, dict) and argument in properties


def result_text(result: mcp.types.CallToolResult, result_key: str | None = None) -> str:
    """What the model sees of a tool result: ``result_key`` of the structured content when
    configured and present, else the text content."""
    structured = result.structured_content
    if result_key is not None and isinstance(structured, dict) and result_key in structured:
        value = structured[result_key]
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    parts: list[str] = []
    for block in result.content:
        text = getattr(block, "text", None)
        if text is None:
            text = getattr(getattr(block, "resource", None), "text", None)
        parts.append(text if isinstance(text, str) else f"[{block.type} content]")
    if not parts and structured is not None:
        return json.dumps(structured, ensure_ascii=False)
    return "\n".join(parts)


class McpToolset(CheckedToolset):
    """One dialogue's view of a connection: the visible tools, with its state argument injected."""

    def __init__(
        self,
        connection: _Connection,
        specs: list[ToolSpec],
        *,
        inject: Mapping[str, Any],
        inject_into: set[str],
        result_key: str | None,
        call_timeout: float,
        name: str,
    ) -> None:
        super().__init__(name=name, call_timeout=call_timeout + _TIMEOUT_GRACE)
        self.connection = connection
        self._specs = specs
        self._inject = dict(inject)
        self._inject_into = inject_into
        self._result_key = result_key
        self._mcp_timeout = call_timeout

    async def list_tools(self) -> list[ToolSpec]:
        return list(self._specs)

    async def invoke(self, spec: ToolSpec, arguments: dict[str, Any]) -> str:
        if spec.name in self._inject_into:
            arguments = {**arguments, **self._inject}
        result = await self.connection.call_tool(spec.name, arguments, self._mcp_timeout)
        text = result_text(result, self._result_key)
        if result.is_error:
            raise ToolCallError(text or f"{spec.name} failed")
        return text


class McpEnvironment(ToolEnvironment):
    """An MCP server's tools, with each dialogue's state kept apart (see the module docstring)."""

    def __init__(self, config: McpServerConfig, *, source: str, call_timeout: float = 30.0) -> None:
        self.config = config
        self.source = source
        self.name = f"MCP server '{config.describe()}'"
        self.call_timeout = call_timeout
        # The reset tool is for strategist, never for the model.
        self._hidden = set(config.hidden) | ({config.reset_tool} if config.reset_tool else set())
        self._connections: set[_Connection] = set()  # every open one, so aclose stops them all
        self._idle: list[_Connection] = []  # "reset": the pool; "process": a fresh spare
        self._shared: _Connection | None = None  # "argument"
        self._specs: list[ToolSpec] | None = None
        self._inject_into: set[str] = set()
        self._active_keys: set[str] = set()
        self._lock = asyncio.Lock()
        self._closed = False

    def _unavailable(self, problem: str) -> ToolsUnavailableError:
        return ToolsUnavailableError(self.source, f"{self.name}: {problem}")

    async def _open(self) -> _Connection:
        if self._closed:
            raise self._unavailable("the tool environment is closed")
        connection = _Connection(self.config, source=self.source, label=self.name)
        self._connections.add(connection)
        try:
            await connection.open()
        except BaseException:
            await self._discard(connection)
            raise
        return connection

    async def _discard(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        await connection.aclose()

    async def start(self) -> None:
        async with self._lock:
            if self._closed:
                raise self._unavailable("the tool environment is closed")
            if self._specs is not None:
                return
            connection = await self._open()
            try:
                self._specs = self._visible(connection.tools)
            except ToolsUnavailableError:
                await self._discard(connection)
                raise
            if self.config.isolation == "argument":
                self._shared = connection
            else:
                self._idle.append(connection)

    def _visible(self, tools: list[mcp.types.Tool]) -> list[ToolSpec]:
        names = {t.name for t in tools}
        reset_tool, argument = self.config.reset_tool, self.config.state_argument
        if reset_tool is not None and reset_tool not in names:
            raise self._unavailable(f"has no tool '{reset_tool}' (the reset_tool)")
        if argument is not None:
            self._inject_into = {t.name for t in tools if _takes(t, argument)}
            if not self._inject_into:
                raise self._unavailable(f"none of its tools takes the state argument '{argument}'")
        specs = [
            ToolSpec(
                name=t.name,
                description=t.description or "",
                parameters=_visible_schema(t.input_schema, argument),
            )
            for t in tools
            if t.name not in self._hidden
        ]
        if not specs:
            raise self._unavailable("lists no tools the model may use (all are hidden)")
        return specs

    async def list_tools(self) -> list[ToolSpec]:
        await self.start()
        return list(self._specs or [])

    def _toolset(self, connection: _Connection, inject: Mapping[str, Any]) -> McpToolset:
        return McpToolset(
            connection,
            list(self._specs or []),
            inject=inject,
            inject_into=self._inject_into,
            result_key=self.config.result_key,
            call_timeout=self.call_timeout,
            name=self.name,
        )

    async def _reset(self, connection: _Connection, inject: Mapping[str, Any]) -> None:
        tool = self.config.reset_tool
        assert tool is not None
        arguments = dict(self.config.reset_arguments)
        if tool in self._inject_into:
            arguments.update(inject)
        try:
            result = await asyncio.wait_for(
                connection.call_tool(tool, arguments, self.call_timeout), self.call_timeout + _TIMEOUT_GRACE
            )
        except ToolsUnavailableError:
            raise
        except (ToolCallError, TimeoutError) as exc:
            raise self._unavailable(f"the reset tool '{tool}' failed: {one_line(exc)}") from None
        if result.is_error:
            raise self._unavailable(f"the reset tool '{tool}' failed: {result_text(result)}")

    @asynccontextmanager
    async def _session(self, key: str) -> AsyncIterator[Toolset]:
        await self.start()
        if self.config.isolation == "argument":
            async with self._keyed(key) as toolset:
                yield toolset
            return
        connection = await self._checkout()
        reusable = False
        try:
            if self.config.isolation == "reset":
                await self._reset(connection, {})
            yield self._toolset(connection, {})
            reusable = self.config.isolation == "reset"
        finally:
            if reusable and connection.alive and not self._closed:
                self._idle.append(connection)
            else:
                await self._discard(connection)

    async def _checkout(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.alive:
                return connection
            await self._discard(connection)
        return await self._open()

    @asynccontextmanager
    async def _keyed(self, key: str) -> AsyncIterator[Toolset]:
        shared = self._shared
        if shared is None or not shared.alive:
            raise self._unavailable("the connection is closed")
        if key in self._active_keys:
            raise ValueError(f"a tool session with key {key!r} is already open")
        self._active_keys.add(key)
        try:
            assert self.config.state_argument is not None
            inject = {self.config.state_argument: key}
            if self.config.reset_tool is not None:
                await self._reset(shared, inject)
            yield self._toolset(shared, inject)
        finally:
            self._active_keys.discard(key)

    def session(self, key: str) -> AbstractAsyncContextManager[Toolset]:
        return self._session(key)

    async def aclose(self) -> None:
        self._closed = True
        connections, self._idle, self._shared = list(self._connections), [], None
        self._connections.clear()
        await asyncio.gather(*(c.aclose() for c in connections), return_exceptions=True)
