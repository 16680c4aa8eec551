"""The one model interface every role talks to. Adapters live next to this file."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# Messages are plain OpenAI-style dicts: {"role": "system" | "user" | "assistant", "content": "..."}.
Message = dict[str, str]


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
    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> Completion:
        """Return the model's reply to ``messages``."""

    async def stream(
        self, messages: Sequence[Message], sampling: Sampling | None = None
    ) -> AsyncIterator[str]:
        """Yield the reply in pieces as it is generated.

        Optional: this default yields the whole ``complete()`` text at once, so every model
        streams; adapters whose backend streams override it.
        """
        completion = await self.complete(messages, sampling)
        yield completion.text

    def count_tokens(self, text: str) -> int | None:
        """Tokens ``text`` takes in this model's prompt, or None when the tokenizer is unknown."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing
        """Release resources (threads, connections). Safe to call twice."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def normalise_messages(messages: Sequence[Any]) -> list[Message]:
    """Copy messages into plain {role, content} dicts, checking their shape."""
    out: list[Message] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content'")
        out.append({"role": str(m["role"]), "content": str(m["content"] or "")})
    return out


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
