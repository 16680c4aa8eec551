"""Models for tests, shipped in the package so users can test their own bots offline.

``ScriptedModel`` answers from a queue and records every call; ``FunctionModel`` answers by
calling a function of the messages. Neither touches a network. Either can call tools: reply with
``tool_call("get_order", {"order_id": "W1"})`` (or a Completion carrying ``tool_calls``).
"""

from __future__ import annotations

import inspect
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.text import estimate_tokens
from ..errors import ModelError
from .base import ChatModel, Completion, Message, Sampling, ToolCallRequest, ToolParams, normalise_messages

Reply = str | Completion | BaseException


@dataclass
class Call:
    """One recorded call: what the model was sent."""

    messages: list[Message]
    sampling: Sampling
    tools: ToolParams | None = None

    @property
    def system(self) -> str:
        return next((str(m["content"]) for m in self.messages if m["role"] == "system"), "")

    @property
    def last(self) -> str:
        return str(self.messages[-1]["content"]) if self.messages else ""

    @property
    def tool_names(self) -> list[str]:
        return self.tools.names if self.tools else []


def tool_call(
    name: str, arguments: Mapping[str, Any] | str | None = None, *, id: str | None = None, text: str = ""
) -> Completion:
    """A reply that calls one tool (arguments as a mapping, or raw text to test malformed calls)."""
    return tool_calls((name, arguments, id), text=text)


def tool_calls(*calls: tuple[str, Mapping[str, Any] | str | None, str | None], text: str = "") -> Completion:
    """A reply that calls several tools: ``(name, arguments, id or None)`` each."""
    requests = [
        ToolCallRequest(
            id=call_id or f"call_{i}",
            name=name,
            arguments=args if isinstance(args, str) else json.dumps(dict(args or {})),
        )
        for i, (name, args, call_id) in enumerate(calls)
    ]
    return Completion(text=text, model="", tool_calls=requests, finish_reason="tool_calls")


def _as_completion(reply: Reply, name: str, messages: list[Message]) -> Completion:
    if isinstance(reply, BaseException):
        raise reply
    # The stated estimate (about 4 characters a token), so budgets work with fakes too.
    prompt = sum(estimate_tokens(str(m.get("content") or "")) for m in messages)
    if isinstance(reply, Completion):
        if reply.model or reply.prompt_tokens:
            return reply
        # A bare reply (e.g. from tool_call()): fill in what a backend would.
        out = sum(estimate_tokens(c.name + c.arguments) for c in reply.tool_calls or []) + estimate_tokens(
            reply.text
        )
        return Completion(
            text=reply.text,
            model=name,
            prompt_tokens=prompt,
            completion_tokens=max(1, out),
            tool_calls=reply.tool_calls,
            finish_reason=reply.finish_reason,
        )
    return Completion(
        text=reply, model=name, prompt_tokens=prompt, completion_tokens=max(1, estimate_tokens(reply))
    )


class _Recording(ChatModel):
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[Call] = []

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return 0.0  # a test double costs nothing

    def _record(
        self, messages: Sequence[Message], sampling: Sampling | None, tools: ToolParams | None
    ) -> list[Message]:
        msgs = normalise_messages(messages)
        self.calls.append(Call(msgs, sampling or Sampling(), tools))
        return msgs


class ScriptedModel(_Recording):
    """Replies from a queue, in order. An exception in the queue is raised instead of replying.

    >>> m = ScriptedModel(["hello"]); m.enqueue("again")
    """

    def __init__(self, replies: Iterable[Reply] = (), *, name: str = "scripted", default: str | None = None):
        super().__init__(name)
        self._queue: deque[Reply] = deque(replies)
        self.default = default

    def enqueue(self, *replies: Reply) -> None:
        self._queue.extend(replies)

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def complete(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> Completion:
        msgs = self._record(messages, sampling, tools)
        if self._queue:
            reply = self._queue.popleft()
        elif self.default is not None:
            reply = self.default
        else:
            raise ModelError(self.name, "scripted model has no reply left in its queue")
        return _as_completion(reply, self.name, msgs)


ReplyFunction = Callable[..., "Reply | Awaitable[Reply]"]


class FunctionModel(_Recording):
    """Replies with ``fn(messages, sampling)``, or ``fn(messages, sampling, tools)`` when ``fn``
    takes three arguments (``tools`` is the ToolParams offered, or None); sync or async."""

    def __init__(self, fn: ReplyFunction, *, name: str = "function") -> None:
        super().__init__(name)
        self.fn = fn
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            params = []  # type: ignore[assignment]
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self._wants_tools = len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)

    async def complete(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> Completion:
        msgs = self._record(messages, sampling, tools)
        s = sampling or Sampling()
        result = self.fn(msgs, s, tools) if self._wants_tools else self.fn(msgs, s)
        if inspect.isawaitable(result):
            result = await result
        return _as_completion(result, self.name, msgs)
