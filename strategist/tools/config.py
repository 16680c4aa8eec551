"""A domain's ``tools:`` section made into an environment (the one place that knows every kind)."""

from __future__ import annotations

from ..core.tools import ToolsConfig
from .base import CombinedEnvironment, ToolEnvironment


def environment_from_config(config: ToolsConfig, *, source: str) -> ToolEnvironment:
    """The environment a domain's ``tools:`` section describes. Nothing starts until
    ``start()``; ``source`` (e.g. the pack's name) names the tools in error messages."""
    environments: list[ToolEnvironment] = []
    if config.mcp is not None:
        from .mcp import McpEnvironment  # imports the mcp package only when a server is used

        environments.append(McpEnvironment(config.mcp, source=source, call_timeout=config.call_timeout))
    if config.python is not None:
        from .python import PythonEnvironment

        environments.append(PythonEnvironment(config.python, source=source, call_timeout=config.call_timeout))
    if len(environments) == 1:
        return environments[0]
    return CombinedEnvironment(environments, source=source)
