"""Tools: one interface (``Toolset``: list the tools, call one), adapters for MCP servers and
Python functions, and a scripted toolset for tests. ``ToolEnvironment`` gives each dialogue a
toolset whose state no other dialogue sees; ``environment_from_config`` builds one from a
domain's ``tools:`` section.

Tool calls and results travel as plain OpenAI-format messages; ``ToolSpec.to_openai()`` is the
tool as a model is offered it. Nothing here imports the ``mcp`` package until an MCP server is
actually used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.tools import McpServerConfig, ToolsConfig, ToolSpec
from .base import (
    Arguments,
    CheckedToolset,
    CombinedEnvironment,
    CombinedToolset,
    LocalEnvironment,
    ToolCallError,
    ToolEnvironment,
    ToolResult,
    Toolset,
)
from .config import environment_from_config
from .python import FunctionTool, FunctionToolset, PythonEnvironment
from .scripted import ScriptedToolset, ToolCall

if TYPE_CHECKING:
    from .mcp import McpEnvironment, McpToolset

__all__ = [
    "Arguments",
    "CheckedToolset",
    "CombinedEnvironment",
    "CombinedToolset",
    "FunctionTool",
    "FunctionToolset",
    "LocalEnvironment",
    "McpEnvironment",
    "McpServerConfig",
    "McpToolset",
    "PythonEnvironment",
    "ScriptedToolset",
    "ToolCall",
    "ToolCallError",
    "ToolEnvironment",
    "ToolResult",
    "ToolSpec",
    "ToolsConfig",
    "Toolset",
    "environment_from_config",
]


def __getattr__(name: str) -> Any:
    # The MCP adapter loads on first use: it is the only module that imports the mcp package.
    if name in ("McpEnvironment", "McpToolset"):
        from . import mcp

        return getattr(mcp, name)
    raise AttributeError(f"module 'strategist.tools' has no attribute {name!r}")
