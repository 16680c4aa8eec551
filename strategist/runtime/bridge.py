"""Sync methods over async ones (``StrategicBot.reply``, ``StrategyLibrary.retrieve`` with
embeddings, ...): each sync call runs its coroutine on one event loop in a daemon thread, anyio's
blocking portal, started on first use and shared by the whole process. One loop, not one per call
or per object: model clients (httpx in litellm) are bound to the loop they were first used on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import StrategistError

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

T = TypeVar("T")

_lock = threading.Lock()
_portal: BlockingPortal | None = None
_running: AbstractContextManager[BlockingPortal] | None = None  # keeps the portal's thread going


def in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(fn: Callable[..., Awaitable[T]], *args: Any, refuse: str) -> T:
    """``await fn(*args)`` from sync code, on the shared loop. Called inside a running event loop
    (where waiting would block that loop) it raises StrategistError(``refuse``) instead: say there
    which async method to use."""
    if in_event_loop():
        raise StrategistError(refuse)
    return _shared_portal().call(fn, *args)


def _shared_portal() -> BlockingPortal:
    global _portal, _running
    with _lock:
        if _portal is None:
            from anyio.from_thread import start_blocking_portal  # async-only programs never load it

            _running = start_blocking_portal()
            _portal = _running.__enter__()
        return _portal
