"""Running model work concurrently under a limit, so that a failure stops all of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def run_all(aws: Sequence[Awaitable[T]], limit: asyncio.Semaphore) -> list[T]:
    """Results in the order given. On the first error the rest is cancelled and that error raised
    as itself (not as a group): no call outlives a stopped run."""

    async def limited(aw: Awaitable[T]) -> T:
        async with limit:
            return await aw

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(limited(aw)) for aw in aws]
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None
    return [t.result() for t in tasks]
