"""Models for tests, shipped in the package so users can test their own bots offline.

``ScriptedModel`` answers from a queue and records every call; ``FunctionModel`` answers by
calling a function of the messages. Neither touches a network.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from ..errors import ModelError
from .base import ChatModel, Completion, Message, Sampling, normalise_messages

Reply = str | Completion | BaseException


@dataclass
class Call:
    """One recorded call: what the model was sent."""

    messages: list[Message]
    sampling: Sampling

    @property
    def system(self) -> str:
        return next((m["content"] for m in self.messages if m["role"] == "system"), "")

    @property
    def last(self) -> str:
        return self.messages[-1]["content"] if self.messages else ""


def _estimate_tokens(text: str) -> int:
    # A stated estimate (about 4 characters a token) so budgets work with fakes too.
    return max(1, len(text) // 4)


def _as_completion(reply: Reply, name: str, messages: list[Message]) -> Completion:
    if isinstance(reply, BaseException):
        raise reply
    if isinstance(reply, Completion):
        return reply
    prompt = sum(_estimate_tokens(m["content"]) for m in messages)
    return Completion(text=reply, model=name, prompt_tokens=prompt, completion_tokens=_estimate_tokens(reply))


class _Recording(ChatModel):
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[Call] = []

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return 0.0  # a test double costs nothing

    def _record(self, messages: Sequence[Message], sampling: Sampling | None) -> list[Message]:
        msgs = normalise_messages(messages)
        self.calls.append(Call(msgs, sampling or Sampling()))
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

    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> Completion:
        msgs = self._record(messages, sampling)
        if self._queue:
            reply = self._queue.popleft()
        elif self.default is not None:
            reply = self.default
        else:
            raise ModelError(self.name, "scripted model has no reply left in its queue")
        return _as_completion(reply, self.name, msgs)


ReplyFunction = Callable[[list[Message], Sampling], "Reply | Awaitable[Reply]"]


class FunctionModel(_Recording):
    """Replies with ``fn(messages, sampling)``; ``fn`` may be sync or async."""

    def __init__(self, fn: ReplyFunction, *, name: str = "function") -> None:
        super().__init__(name)
        self.fn = fn

    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> Completion:
        msgs = self._record(messages, sampling)
        result = self.fn(msgs, sampling or Sampling())
        if inspect.isawaitable(result):
            result = await result
        return _as_completion(result, self.name, msgs)
