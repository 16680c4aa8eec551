"""Embedding models: one interface (``Embedder``), the litellm adapter, and a function embedder for
tests and custom models. The run-time library uses them to re-rank its lexical hits."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ModelError, one_line, redact_secrets
from .base import get_field


class Embedder(Protocol):
    """Turns texts into vectors: any litellm embedding model, or a function (tests)."""

    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class LiteLLMEmbedder:
    """Embeddings from any litellm embedding model (``openai/text-embedding-3-small``, ...)."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key_env: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.name = model
        self.api_base = api_base
        self.api_key_env = api_key_env
        self.timeout = timeout

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        from .litellm_model import connection_kwargs, import_litellm  # its retry stack loads on use

        lt = import_litellm()
        kwargs: dict[str, Any] = {
            "model": self.name,
            "input": list(texts),
            "timeout": self.timeout,
            **connection_kwargs(self.name, self.api_base, self.api_key_env),
        }
        try:
            with warnings.catch_warnings():
                # litellm's response model warns about token-level vectors (handled below).
                warnings.simplefilter("ignore", UserWarning)
                resp = await lt.aembedding(**kwargs)
        except Exception as exc:
            raise ModelError(self.name, redact_secrets(one_line(exc), [kwargs.get("api_key")])) from exc
        data = sorted(get_field(resp, "data") or [], key=lambda d: int(get_field(d, "index", 0)))
        return [_pooled(get_field(d, "embedding")) for d in data]


def _pooled(embedding: Any) -> list[float]:
    """One vector per text. A server without pooling (llama.cpp serving a chat model) returns one
    vector per token: those are averaged."""
    if embedding and isinstance(embedding[0], list | tuple):
        import numpy as np

        return [float(x) for x in np.asarray(embedding, dtype=np.float64).mean(axis=0)]
    return [float(x) for x in embedding]


EmbedFunction = Callable[[list[str]], "list[list[float]] | Awaitable[list[list[float]]]"]


@dataclass
class FunctionEmbedder:
    """Embeddings from a function of the texts (sync or async); for tests and custom models."""

    fn: EmbedFunction
    name: str = "function"
    calls: list[list[str]] = field(default_factory=list)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        out = self.fn(list(texts))
        if inspect.isawaitable(out):
            out = await out
        return [list(map(float, v)) for v in out]
