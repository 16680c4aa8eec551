"""Tools as data: what a tool looks like to a model, and where a domain's tools come from.

Pure configuration (pydantic and the standard library only); ``strategist.tools`` turns it into
running toolsets.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STATE_DIR_PLACEHOLDER = "{state_dir}"
_PYTHON_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


class ToolSpec(BaseModel):
    """One tool as a model sees it: a name, what it does, and the JSON schema of its arguments."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_openai(self) -> dict[str, Any]:
        """The tool in OpenAI's ``tools`` format."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    @classmethod
    def from_openai(cls, tool: Mapping[str, Any]) -> ToolSpec:
        """Read an OpenAI tool (``{"type": "function", "function": {...}}``, or the inner dict)."""
        function = tool.get("function", tool)
        if not isinstance(function, Mapping):
            raise ValueError("an OpenAI tool needs a 'function' object")
        data: dict[str, Any] = {
            "name": function.get("name"),
            "description": function.get("description") or "",
        }
        if function.get("parameters") is not None:
            data["parameters"] = function["parameters"]
        return cls.model_validate(data)


class McpServerConfig(BaseModel):
    """An MCP server that provides tools, and how each dialogue gets a state of its own."""

    model_config = ConfigDict(extra="forbid")

    #: Start the server as this process and talk to it over stdio. A string is split like a shell.
    command: list[str] | None = None
    #: Or connect to a running server over streamable HTTP.
    url: str | None = None
    #: Extra environment for the process; "{state_dir}" in a value becomes a fresh temporary
    #: folder made for each server process and deleted when it is closed.
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    #: HTTP headers sent with every request (streamable HTTP only).
    headers: dict[str, str] = Field(default_factory=dict)
    #: How dialogues are kept apart: "process" starts a server per dialogue; "reset" reuses
    #: connections and calls ``reset_tool`` at the start of each dialogue; "argument" shares one
    #: connection and passes each dialogue's key as ``state_argument`` to every call.
    isolation: Literal["process", "reset", "argument"] = "process"
    #: Called at the start of each dialogue ("reset"; optional with "argument"). Never shown
    #: to the model.
    reset_tool: str | None = None
    reset_arguments: dict[str, Any] = Field(default_factory=dict)
    #: The argument that carries a dialogue's key ("argument"); hidden from the model's schemas.
    state_argument: str | None = None
    #: Tools the model never sees and cannot call (control tools such as a call log).
    hidden: list[str] = Field(default_factory=list)
    #: Show the model only this key of a result's structured content, when present.
    result_key: str | None = None
    startup_timeout: float = Field(default=30.0, gt=0)

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split the command: {exc}") from None
        return value

    @field_validator("command")
    @classmethod
    def _nonempty_command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0].strip()):
            raise ValueError("the command is empty")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("the url must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio) or 'url' (streamable HTTP)")
        if self.url is not None:
            if self.env or self.cwd is not None:
                raise ValueError("'env' and 'cwd' apply to a 'command' only, not to a 'url'")
            if self.isolation == "process":
                raise ValueError(
                    "isolation 'process' needs a 'command' (a server per dialogue); "
                    "with a 'url' use isolation 'reset' or 'argument'"
                )
        if self.command is not None and self.headers:
            raise ValueError("'headers' apply to a 'url' only, not to a 'command'")
        if self.isolation == "reset" and not self.reset_tool:
            raise ValueError("isolation 'reset' needs 'reset_tool'")
        if self.isolation == "argument" and not self.state_argument:
            raise ValueError("isolation 'argument' needs 'state_argument'")
        if self.state_argument is not None and self.isolation != "argument":
            raise ValueError("'state_argument' is used with isolation 'argument' only")
        return self

    def describe(self) -> str:
        """The server as named in messages: its command line, or its url without credentials
        or query (either may hold a token)."""
        if self.command is not None:
            return shlex.join(self.command)
        url = urlsplit(str(self.url))
        return urlunsplit((url.scheme, url.netloc.rpartition("@")[2], url.path, "", ""))


class ToolsConfig(BaseModel):
    """A domain's tools: an MCP server, Python functions, or both."""

    model_config = ConfigDict(extra="forbid")

    mcp: McpServerConfig | None = None
    #: "package.module:ATTR": a list of functions (shared by every dialogue) or a zero-argument
    #: factory returning one (called once per dialogue, for tools with state).
    python: str | None = None
    #: Tool steps the agent may take in one turn.
    max_steps: int = Field(default=4, ge=1, le=20)
    #: Seconds one tool call may take before it becomes an error result.
    call_timeout: float = Field(default=30.0, gt=0)

    @field_validator("python")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is not None and not _PYTHON_TARGET.fullmatch(value):
            raise ValueError(f"expected 'package.module:ATTR', got {value!r}")
        return value

    @model_validator(mode="after")
    def _some_tools(self) -> ToolsConfig:
        if self.mcp is None and self.python is None:
            raise ValueError("give 'mcp', 'python' or both")
        return self
