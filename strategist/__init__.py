"""strategist: teach a small support bot a large model's know-how as audited strategies.

The run-time API is importable from here; it loads on first use, so ``import strategist`` stays
cheap (the command line imports this package on every start).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import BotReply, Retrieval, StrategicBot, StrategyLibrary

__all__ = ["BotReply", "Retrieval", "StrategicBot", "StrategyLibrary"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module(".runtime", __name__), name)
    raise AttributeError(f"module 'strategist' has no attribute {name!r}")
