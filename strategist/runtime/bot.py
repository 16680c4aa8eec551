"""``StrategicBot``: a support bot whose every reply is written with the strategies that fit.

>>> bot = StrategicBot(student="embedded/smollm2", library="strategist.db", domain="northwind")
>>> reply = bot.reply([{"role": "user", "content": "Can I return boots I bought 40 days ago?"}])
>>> reply.text, reply.strategies          # the answer, and ['strategy:4@v1', ...]
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

from ..errors import one_line
from ..models.base import (
    ChatModel,
    Completion,
    Message,
    Sampling,
    StreamPiece,
    ToolCallDelta,
    ToolCallRequest,
    ToolParams,
    complete,
    stream,
)
from .bridge import run_sync
from .library import SYSTEM_ROLES, RetrievalSettings, StrategyLibrary, check_messages, model_messages
from .retrieval import Retrieval, TokenCounter, estimate_tokens


def model_token_counter(model: ChatModel) -> TokenCounter:
    """Count with the model's own tokenizer where it has one, else estimate (~4 chars/token)."""

    def count(text: str) -> int:
        n = model.count_tokens(text)
        return estimate_tokens(text) if n is None else n

    return count


def _tool_params(
    tools: Sequence[Mapping[str, Any]] | None, choice: str | dict[str, Any] | None
) -> ToolParams | None:
    """OpenAI tool dicts as the model layer takes them; each is checked for its shape."""
    if not tools:
        return None
    from ..core.tools import ToolSpec
    from ..errors import InputError

    for i, tool in enumerate(tools):
        try:
            ToolSpec.from_openai(tool)
        except (ValueError, TypeError) as exc:
            raise InputError("tools", f"[{i}]", f"not an OpenAI tool: {one_line(exc)}") from None
    return ToolParams(tuple(dict(t) for t in tools), choice)


def _refuse(name: str) -> str:
    return f"{name}() cannot run inside an event loop; use its async twin a{name}()"


class _WithStrategies:
    """What a reply says about the strategies in its prompt."""

    retrieval: Retrieval

    @property
    def strategies(self) -> list[str]:
        """Refs of the strategies used: ``strategy:ID@vVERSION``."""
        return self.retrieval.refs

    @property
    def include_pending(self) -> bool:
        return self.retrieval.include_pending


@dataclass(frozen=True)
class BotReply(_WithStrategies):
    """One reply, with the strategies that were in the prompt when it was written. With tools, the
    model may have asked for tool calls instead of (or besides) writing text: your bot runs them
    and sends the results back (``as_message()`` is the assistant message to keep in the history)."""

    text: str
    retrieval: Retrieval
    messages: list[Message]  # exactly what the student was sent
    model: str
    completion: Completion | None = None  # None for a streamed reply
    tool_calls: list[ToolCallRequest] = field(default_factory=list)

    def as_message(self) -> dict[str, Any]:
        """The reply as an OpenAI assistant message (with ``tool_calls`` when it has them)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            msg["content"] = self.text or None
            msg["tool_calls"] = [c.as_openai() for c in self.tool_calls]
        return msg

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "model": self.model,
            "strategies": self.strategies,
            "include_pending": self.include_pending,
            "retrieval": self.retrieval.as_dict(),
            "tool_calls": [c.as_openai() for c in self.tool_calls],
        }


class ReplyStream(_WithStrategies):
    """An async iterator over the pieces of one reply: text, and with tools the pieces of tool
    calls (``ToolCallDelta``, as OpenAI streams them). Which strategies it uses is known before the
    first piece (``strategies``); ``reply`` is complete once the iteration has ended."""

    def __init__(
        self, pieces: AsyncIterator[StreamPiece], retrieval: Retrieval, messages: list[Message], model: str
    ):
        self._pieces = pieces
        self.retrieval = retrieval
        self.messages = messages
        self.model = model
        self._text: list[str] = []
        self._calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]
        self.done = False

    @property
    def text(self) -> str:
        """The reply so far."""
        return "".join(self._text)

    @property
    def tool_calls(self) -> list[ToolCallRequest]:
        """The tool calls streamed so far, their pieces joined."""
        return [
            ToolCallRequest(id=call_id or f"call_{i}", name=name or "", arguments="".join(args))
            for i, (call_id, name, args) in sorted(self._calls.items())
        ]

    @property
    def reply(self) -> BotReply:
        return BotReply(self.text, self.retrieval, self.messages, self.model, tool_calls=self.tool_calls)

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> StreamPiece:
        try:
            piece = await self._pieces.__anext__()
        except StopAsyncIteration:
            self.done = True
            raise
        if isinstance(piece, ToolCallDelta):
            call = self._calls.setdefault(piece.index, [None, None, []])
            call[0] = call[0] or piece.id
            call[1] = call[1] or piece.name
            call[2].append(piece.arguments)
        else:
            self._text.append(piece)
        return piece

    async def aclose(self) -> None:
        close = getattr(self._pieces, "aclose", None)
        if close is not None:
            await close()


class SyncReplyStream(_WithStrategies):
    """``ReplyStream`` for sync code: iterate it for the pieces."""

    def __init__(self, stream: ReplyStream) -> None:
        self._stream = stream
        self.retrieval = stream.retrieval

    @property
    def text(self) -> str:
        return self._stream.text

    @property
    def reply(self) -> BotReply:
        return self._stream.reply

    @property
    def tool_calls(self) -> list[ToolCallRequest]:
        return self._stream.tool_calls

    def __iter__(self) -> Iterator[StreamPiece]:
        while True:
            try:
                yield run_sync(self._stream.__anext__, refuse=_refuse("stream"))
            except StopAsyncIteration:
                return

    def close(self) -> None:
        run_sync(self._stream.aclose, refuse=_refuse("close"))


class StrategicBot:
    """A student model plus a strategy library: retrieve, render the prompt, reply.

    ``student`` is a ChatModel or a model name (``embedded/smollm2``, any litellm name);
    ``library`` a StrategyLibrary or a database path/URL. ``system_prompt`` is your bot's own
    prompt (the strategies are added after it); without it the domain's policy prompt is used.
    A system message in the conversation is replaced by the prompt the bot builds. ``k``,
    ``budget`` and ``include_pending`` (``RetrievalSettings``) apply to every reply.

    ``tools`` (OpenAI tool dicts) are offered to the model on every reply (``tools=`` on a call
    overrides them): the bot owns its tools, so a reply may carry ``tool_calls`` for you to run;
    send their results back as ``tool`` messages and ask again. Tool-call and tool messages in the
    conversation go to the model as they are.
    """

    def __init__(
        self,
        student: ChatModel | str,
        library: StrategyLibrary | str | Path,
        domain: str | None = None,
        system_prompt: str | None = None,
        *,
        sampling: Sampling | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        **settings: Unpack[RetrievalSettings],
    ) -> None:
        if isinstance(student, str):
            from ..models import resolve_model

            student = resolve_model(student)
        self.student = student
        self._owns_library = not isinstance(library, StrategyLibrary)
        self.library = library if isinstance(library, StrategyLibrary) else StrategyLibrary.open(library)
        self.domain = self.library.domain_id(domain)
        self.library.domain(self.domain)  # an unknown domain fails here, not at the first reply
        self.system_prompt = system_prompt
        self.settings = settings  # k, budget, include_pending: None or left out is the library's
        self.sampling = sampling or Sampling(temperature=0.7, max_tokens=256)
        self.token_counter = model_token_counter(student)
        self.tools = _tool_params(tools, tool_choice)

    async def prepare(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[Message], Retrieval]:
        """What the student will be sent for ``messages``, and the retrieval behind it."""
        check_messages(messages)
        found = await self.library.aretrieve(
            messages, domain=self.domain, token_counter=self.token_counter, **self.settings
        )
        conversation = [m for m in messages if m.get("role") not in SYSTEM_ROLES]
        if self.system_prompt is None:
            conversation = list(messages)  # keep the caller's system message as the base prompt
        augmented = self.library.augment_with(conversation, found, system_prompt=self.system_prompt)
        return model_messages(augmented), found

    def _tools(self, tools: Sequence[Mapping[str, Any]] | None) -> ToolParams | None:
        return self.tools if tools is None else _tool_params(tools, None)

    async def areply(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        sampling: Sampling | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> BotReply:
        sent, found = await self.prepare(messages)
        completion = await complete(self.student, sent, sampling or self.sampling, self._tools(tools))
        return BotReply(
            completion.text,
            found,
            sent,
            self.student.name,
            completion,
            tool_calls=completion.tool_calls or [],
        )

    def reply(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        sampling: Sampling | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> BotReply:
        call = functools.partial(self.areply, messages, sampling=sampling, tools=tools)
        return run_sync(call, refuse=_refuse("reply"))

    async def astream(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        sampling: Sampling | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> ReplyStream:
        """Retrieve and start the reply; iterate the result for its pieces."""
        sent, found = await self.prepare(messages)
        pieces = stream(self.student, sent, sampling or self.sampling, self._tools(tools))
        return ReplyStream(pieces, found, sent, self.student.name)

    def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        sampling: Sampling | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> SyncReplyStream:
        call = functools.partial(self.astream, messages, sampling=sampling, tools=tools)
        return SyncReplyStream(run_sync(call, refuse=_refuse("stream")))

    async def aclose(self) -> None:
        await self.student.aclose()
        self.library.flush()
        if self._owns_library:
            self.library.close()

    def close(self) -> None:
        run_sync(self.aclose, refuse=_refuse("close"))
