"""``StrategicBot``: a support bot whose every reply is written with the strategies that fit.

>>> bot = StrategicBot(student="embedded/smollm2", library="strategist.db", domain="northwind")
>>> reply = bot.reply([{"role": "user", "content": "Can I return boots I bought 40 days ago?"}])
>>> reply.text, reply.strategies          # the answer, and ['strategy:4@v1', ...]
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

from ..models.base import ChatModel, Completion, Message, Sampling
from .bridge import run_sync
from .library import SYSTEM_ROLES, RetrievalSettings, StrategyLibrary, check_messages, model_messages
from .retrieval import Retrieval, TokenCounter, estimate_tokens


def model_token_counter(model: ChatModel) -> TokenCounter:
    """Count with the model's own tokenizer where it has one, else estimate (~4 chars/token)."""

    def count(text: str) -> int:
        n = model.count_tokens(text)
        return estimate_tokens(text) if n is None else n

    return count


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
    """One reply, with the strategies that were in the prompt when it was written."""

    text: str
    retrieval: Retrieval
    messages: list[Message]  # exactly what the student was sent
    model: str
    completion: Completion | None = None  # None for a streamed reply

    def as_message(self) -> dict[str, str]:
        return {"role": "assistant", "content": self.text}

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "model": self.model,
            "strategies": self.strategies,
            "include_pending": self.include_pending,
            "retrieval": self.retrieval.as_dict(),
        }


class ReplyStream(_WithStrategies):
    """An async iterator over the pieces of one reply. Which strategies it uses is known before
    the first piece (``strategies``); ``reply`` is complete once the iteration has ended."""

    def __init__(self, pieces: AsyncIterator[str], retrieval: Retrieval, messages: list[Message], model: str):
        self._pieces = pieces
        self.retrieval = retrieval
        self.messages = messages
        self.model = model
        self._text: list[str] = []
        self.done = False

    @property
    def text(self) -> str:
        """The reply so far."""
        return "".join(self._text)

    @property
    def reply(self) -> BotReply:
        return BotReply(self.text, self.retrieval, self.messages, self.model)

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> str:
        try:
            piece = await self._pieces.__anext__()
        except StopAsyncIteration:
            self.done = True
            raise
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

    def __iter__(self) -> Iterator[str]:
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
    """

    def __init__(
        self,
        student: ChatModel | str,
        library: StrategyLibrary | str | Path,
        domain: str | None = None,
        system_prompt: str | None = None,
        *,
        sampling: Sampling | None = None,
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

    async def areply(
        self, messages: Sequence[Mapping[str, Any]], *, sampling: Sampling | None = None
    ) -> BotReply:
        sent, found = await self.prepare(messages)
        completion = await self.student.complete(sent, sampling or self.sampling)
        return BotReply(completion.text, found, sent, self.student.name, completion)

    def reply(self, messages: Sequence[Mapping[str, Any]], *, sampling: Sampling | None = None) -> BotReply:
        return run_sync(functools.partial(self.areply, messages, sampling=sampling), refuse=_refuse("reply"))

    async def astream(
        self, messages: Sequence[Mapping[str, Any]], *, sampling: Sampling | None = None
    ) -> ReplyStream:
        """Retrieve and start the reply; iterate the result for its pieces."""
        sent, found = await self.prepare(messages)
        pieces = self.student.stream(sent, sampling or self.sampling)
        return ReplyStream(pieces, found, sent, self.student.name)

    def stream(
        self, messages: Sequence[Mapping[str, Any]], *, sampling: Sampling | None = None
    ) -> SyncReplyStream:
        started = run_sync(
            functools.partial(self.astream, messages, sampling=sampling), refuse=_refuse("stream")
        )
        return SyncReplyStream(started)

    async def aclose(self) -> None:
        await self.student.aclose()
        self.library.flush()
        if self._owns_library:
            self.library.close()

    def close(self) -> None:
        run_sync(self.aclose, refuse=_refuse("close"))
