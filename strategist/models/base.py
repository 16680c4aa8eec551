"""The one model interface every role talks to. Adapters live next to this file."""

from __future__ import annotations

import abc
import json
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Messages are plain OpenAI-style dicts: {"role": "system" | "user" | "assistant" | "tool",
# "content": "..."}, an assistant message may carry "tool_calls", a tool message "tool_call_id".
Message = dict[str, Any]


@dataclass(frozen=True)
class Sampling:
    """Every parameter that changes what a model returns; hashable so it can key a cache."""

    temperature: float = 0.7
    max_tokens: int = 256
    seed: int | None = None
    # A JSON schema constrains the output where the backend can (grammar, response_format).
    json_schema: str | None = None  # the schema as canonical JSON text, to stay hashable
    # >0 asks for the top-k log-probabilities of each generated token, where the backend has them.
    top_logprobs: int = 0
    stop: tuple[str, ...] = ()


def sampling_kwargs(s: Sampling) -> dict[str, Any]:
    """The OpenAI-style request parameters every backend understands."""
    kwargs: dict[str, Any] = {"temperature": s.temperature, "max_tokens": s.max_tokens}
    if s.seed is not None:
        kwargs["seed"] = s.seed
    if s.stop:
        kwargs["stop"] = list(s.stop)
    return kwargs


@dataclass(frozen=True)
class ToolParams:
    """The tools a request offers the model, as OpenAI's chat API takes them."""

    tools: tuple[dict[str, Any], ...]  # OpenAI tool dicts: {"type": "function", "function": {...}}
    choice: str | dict[str, Any] | None = None  # tool_choice: "auto", "none", "required" or a named tool
    parallel: bool | None = None  # parallel_tool_calls

    @property
    def names(self) -> list[str]:
        return [str(t.get("function", {}).get("name", "")) for t in self.tools]

    def request_fields(self) -> dict[str, Any]:
        """The request's tool fields, for any OpenAI-compatible API."""
        out: dict[str, Any] = {"tools": [dict(t) for t in self.tools]}
        if self.choice is not None:
            out["tool_choice"] = self.choice
        if self.parallel is not None:
            out["parallel_tool_calls"] = self.parallel
        return out


@dataclass(frozen=True)
class ToolCallRequest:
    """One tool call a model asked for: its id, the tool's name, and the arguments as the model
    wrote them (JSON text, possibly malformed: executing it decides)."""

    id: str
    name: str
    arguments: str

    def as_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call while a reply streams (OpenAI's ``delta.tool_calls`` item)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def as_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            out["id"] = self.id
            out["type"] = "function"
        function: dict[str, Any] = {"arguments": self.arguments}
        if self.name is not None:
            function["name"] = self.name
        out["function"] = function
        return out


StreamPiece = str | ToolCallDelta


@dataclass
class TokenLogprobs:
    """One generated token with the log-probabilities of its top alternatives."""

    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass
class Completion:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # None means the backend returned no log-probabilities (not that there were none).
    logprobs: list[TokenLogprobs] | None = None
    latency_ms: float = 0.0
    cache_hit: bool = False
    # What the provider charged, where known (litellm's price table); None when unknown.
    cost_usd: float | None = None
    # The tools the model asked to call instead of (or besides) replying; None when it called none.
    tool_calls: list[ToolCallRequest] | None = None
    finish_reason: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatModel(abc.ABC):
    """A black-box chat model: messages in, text out."""

    #: The model's name as the user wrote it, e.g. ``embedded/smollm2`` or ``openai/gpt-4o``.
    name: str = "model"

    @property
    def cache_identity(self) -> str:
        """What the response cache files this model's answers under, besides the request.

        The name, by default. A model whose name does not pin down what answers (a local weights
        file, which can be swapped under the same name) returns something that does.
        """
        return self.name

    @abc.abstractmethod
    async def complete(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> Completion:
        """Return the model's reply to ``messages``; with ``tools``, possibly tool calls instead."""

    async def stream(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> AsyncIterator[StreamPiece]:
        """Yield the reply in pieces as it is generated: text, and with ``tools`` the pieces of
        tool calls (``ToolCallDelta``).

        Optional: this default yields the whole ``complete()`` reply at once, so every model
        streams; adapters whose backend streams override it.
        """
        completion = await complete(self, messages, sampling, tools)
        if completion.text:
            yield completion.text
        for i, call in enumerate(completion.tool_calls or []):
            yield ToolCallDelta(i, call.id, call.name, call.arguments)

    def count_tokens(self, text: str) -> int | None:
        """Tokens ``text`` takes in this model's prompt, or None when the tokenizer is unknown."""
        return None

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What these tokens would cost on this model in US dollars, or None when it is unknown."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing
        """Release resources (threads, connections). Safe to call twice."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


_MESSAGE_FIELDS = ("name", "tool_call_id")


def normalise_messages(messages: Sequence[Any]) -> list[Message]:
    """Copy messages into plain OpenAI-style dicts, checking their shape: role and content (text),
    plus an assistant's ``tool_calls`` and a tool message's ``tool_call_id`` and ``name``."""
    out: list[Message] = []
    for i, m in enumerate(messages):
        if type(m) is dict and len(m) == 2:  # the plain {role, content} message: nothing to convert
            role, content = m.get("role"), m.get("content")
            if type(role) is str and type(content) is str:
                out.append({"role": role, "content": content})
                continue
        if not isinstance(m, dict) or "role" not in m or ("content" not in m and not m.get("tool_calls")):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content'")
        msg: Message = {"role": str(m["role"]), "content": str(m.get("content") or "")}
        if m.get("tool_calls"):
            msg["tool_calls"] = [dict(c) for c in m["tool_calls"]]
        for key in _MESSAGE_FIELDS:
            if m.get(key) is not None:
                msg[key] = str(m[key])
        out.append(msg)
    return out


def parse_openai_tool_calls(raw: Any) -> list[ToolCallRequest] | None:
    """Read OpenAI-style ``message.tool_calls`` (objects or dicts) into ToolCallRequests."""
    if not raw:
        return None
    out = []
    for i, call in enumerate(raw):
        function = get_field(call, "function") or {}
        arguments = get_field(function, "arguments")
        if not isinstance(arguments, str):  # some servers send an object
            arguments = json.dumps(arguments if arguments is not None else {})
        out.append(
            ToolCallRequest(
                id=str(get_field(call, "id") or f"call_{i}"),
                name=str(get_field(function, "name") or ""),
                arguments=arguments,
            )
        )
    return out


def complete(
    model: ChatModel, messages: Sequence[Message], sampling: Sampling | None, tools: ToolParams | None
) -> Awaitable[Completion]:
    """``model.complete``, offering ``tools`` only when there are some: a ChatModel written before
    tools existed (two arguments) keeps working for every call without tools."""
    return model.complete(messages, sampling) if tools is None else model.complete(messages, sampling, tools)


def stream(
    model: ChatModel, messages: Sequence[Message], sampling: Sampling | None, tools: ToolParams | None
) -> AsyncIterator[StreamPiece]:
    """``model.stream``, with ``tools`` only when there are some (see ``complete``)."""
    return model.stream(messages, sampling) if tools is None else model.stream(messages, sampling, tools)


def get_field(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def parse_openai_logprobs(raw: Any) -> list[TokenLogprobs] | None:
    """Read OpenAI-style ``choices[0].logprobs`` (objects or dicts) into TokenLogprobs."""
    content = get_field(raw, "content") if raw is not None else None
    if not content:
        return None
    out = []
    for item in content:
        top = {
            str(get_field(t, "token")): float(get_field(t, "logprob"))
            for t in (get_field(item, "top_logprobs") or [])
        }
        out.append(TokenLogprobs(str(get_field(item, "token")), float(get_field(item, "logprob")), top))
    return out
