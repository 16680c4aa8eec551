"""Strategies at run time: retrieval for a live conversation, the prompt that carries them, a bot
built on both, and (strategist/server.py) an OpenAI-compatible endpoint."""

from __future__ import annotations

from .bot import BotReply, ReplyStream, StrategicBot, SyncReplyStream, model_token_counter
from .library import AugmentedMessages, StrategyLibrary, UsageCounter
from .retrieval import (
    Embedder,
    FunctionEmbedder,
    LiteLLMEmbedder,
    Retrieval,
    Retrieved,
    estimate_tokens,
)

__all__ = [
    "AugmentedMessages",
    "BotReply",
    "Embedder",
    "FunctionEmbedder",
    "LiteLLMEmbedder",
    "ReplyStream",
    "Retrieval",
    "Retrieved",
    "StrategicBot",
    "StrategyLibrary",
    "SyncReplyStream",
    "UsageCounter",
    "estimate_tokens",
    "model_token_counter",
]
