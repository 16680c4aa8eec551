"""Sync methods over async ones (``StrategicBot.reply``, ``StrategyLibrary.retrieve`` with
embeddings, ...): each sync call runs its coroutine through anyio's blocking portal, on one event
loop in a daemon thread, started on first use and shared by the whole process. One loop, not one
per call or per object: model clients (httpx in litellm) are bound to the loop they were first
used on. A daemon thread: a script that used the sync API exits when its main thread ends
(``start_blocking_portal``'s worker thread would keep it waiting at exit forever).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import StrategistError

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

T = TypeVar("T")

_lock = threading.Lock()
_portal: BlockingPortal | None = None


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
    global _portal
    with _lock:
        if _portal is None:
            _portal = _start_portal()
        return _portal


def _start_portal() -> BlockingPortal:
    import anyio
    from anyio.from_thread import BlockingPortal  # async-only programs never load it

    ready: Future[BlockingPortal] = Future()

    async def serve() -> None:
        async with BlockingPortal() as portal:
            ready.set_result(portal)
            await portal.sleep_until_stopped()

    def run() -> None:
        try:
            anyio.run(serve)
        except BaseException as exc:  # the loop could not start: say so to the waiting caller
            if not ready.done():
                ready.set_exception(exc)

    threading.Thread(target=run, name="strategist-sync", daemon=True).start()
    return ready.result()
