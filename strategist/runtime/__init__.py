"""Strategies at run time: retrieval for a live conversation, the prompt that carries them, a bot
built on both, and (strategist/server.py) an OpenAI-compatible endpoint."""

from __future__ import annotations

from ..models.embedding import Embedder, FunctionEmbedder, LiteLLMEmbedder
from .bot import BotReply, ReplyStream, StrategicBot, SyncReplyStream, model_token_counter
from .library import AugmentedMessages, RetrievalOptions, RetrievalSettings, StrategyLibrary
from .retrieval import Retrieval, Retrieved, estimate_tokens
from .usage import UsageCounter

__all__ = [
    "AugmentedMessages",
    "BotReply",
    "Embedder",
    "FunctionEmbedder",
    "LiteLLMEmbedder",
    "ReplyStream",
    "Retrieval",
    "RetrievalOptions",
    "RetrievalSettings",
    "Retrieved",
    "StrategicBot",
    "StrategyLibrary",
    "SyncReplyStream",
    "UsageCounter",
    "estimate_tokens",
    "model_token_counter",
]
