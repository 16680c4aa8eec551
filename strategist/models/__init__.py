"""Models: one interface (ChatModel), adapters, and how a model name becomes a model; embedding
models (Embedder) beside them. Only this package talks to model providers.

Names: a name registered with ``register_model`` (tests, plugins) wins; ``embedded/smollm2``
runs in-process, and so does any GGUF file named ``embedded/PATH.gguf`` (relative to the working
directory, or ``embedded//abs/path.gguf``); ``openai/MODEL`` (OpenAI, or any OpenAI-compatible
server given an ``api_base``) and the known servers ``vllm/``, ``sglang/``, ``llamacpp/``,
``ollama/`` go to the native adapter (``OpenAICompatModel``, no litellm); ``litellm/NAME``, a role
with ``client = "litellm"``, and every other name (``anthropic/...``, ``gemini/...``) go to litellm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import (
    ChatModel,
    Completion,
    Message,
    Sampling,
    TokenLogprobs,
    ToolCallDelta,
    ToolCallRequest,
    ToolParams,
)
from .embedding import Embedder, FunctionEmbedder, LiteLLMEmbedder
from .scripted import Call, FunctionModel, ScriptedModel, tool_call, tool_calls

__all__ = [
    "Call",
    "ChatModel",
    "Completion",
    "Embedder",
    "FunctionEmbedder",
    "FunctionModel",
    "LiteLLMEmbedder",
    "Message",
    "Sampling",
    "ScriptedModel",
    "TokenLogprobs",
    "ToolCallDelta",
    "ToolCallRequest",
    "ToolParams",
    "register_model",
    "resolve_model",
    "tool_call",
    "tool_calls",
    "unregister_model",
]

EMBEDDED_PREFIX = "embedded/"
LITELLM_PREFIX = "litellm/"
NATIVE_PREFIXES = ("openai/", "vllm/", "sglang/", "llamacpp/", "ollama/")
_registry: dict[str, ChatModel | Callable[[], ChatModel]] = {}


def register_model(name: str, model: ChatModel | Callable[[], ChatModel]) -> None:
    """Make ``name`` resolve to ``model`` (or to what the factory returns) everywhere, CLI included."""
    _registry[name] = model


def unregister_model(name: str) -> None:
    _registry.pop(name, None)


def resolve_model(name: str, **options: Any) -> ChatModel:
    """Turn a model name plus options (api_base: one URL or several; api_key_env, json_mode,
    timeout, retries; client: "auto" or "litellm"; path for an embedded model) into a ChatModel."""
    if name in _registry:
        found = _registry[name]
        return found if isinstance(found, ChatModel) else found()
    if name.startswith(EMBEDDED_PREFIX):
        from .embedded import EmbeddedModel

        variant = name[len(EMBEDDED_PREFIX) :]
        path = options.get("path")
        if variant.lower().endswith(".gguf"):
            path = variant  # the name is the file
        elif variant != "smollm2":
            from ..errors import ModelUnavailableError

            raise ModelUnavailableError(
                name,
                "unknown embedded model; the embedded model is 'embedded/smollm2', "
                "or a GGUF file as 'embedded/path/to/model.gguf'",
            )
        return EmbeddedModel(name, path=path)
    connection = {
        "api_key_env": options.get("api_key_env"),
        "json_mode": options.get("json_mode") or "auto",
        "timeout": options.get("timeout") or 120.0,
        "retries": options.get("retries", 4),
    }
    litellm = name.startswith(LITELLM_PREFIX) or options.get("client") == "litellm"
    if not litellm and name.startswith(NATIVE_PREFIXES):
        from .openai_compat import OpenAICompatModel

        server = name.split("/", 1)[0]
        return OpenAICompatModel(name, server=server, api_base=options.get("api_base"), **connection)
    from .litellm_model import LiteLLMModel

    api_base = options.get("api_base")
    if api_base is not None and not isinstance(api_base, str):
        bases = [str(b) for b in api_base]
        if len(bases) > 1:
            from ..errors import ModelUnavailableError

            raise ModelUnavailableError(
                name, "several api_base endpoints need the native adapter (an openai/ name, client 'auto')"
            )
        api_base = bases[0] if bases else None
    return LiteLLMModel(name, api_base=api_base, **connection)
