"""Every model call goes through a LedgeredModel: budget check first, a ledger row after.

Ledger rows and cached responses are written in batches, one transaction each, not one per
call: when calls are fast (a local model, a cache replay) per-call commits would cost more than
everything else strategist does. A batch is written once it holds ``write_batch`` rows or its
oldest row is ``write_interval`` seconds old, before every event (``event()``), and whenever
``flush()`` is called: a run does before it stores anything those calls produced (a dialogue, a
judgement, a scenario, proposals) and at its end. So a process killed outright loses only rows of
calls whose results were not stored either, and a resumed run makes those calls again; every
stored result has its calls in the ledger.

A run's ledger writes off the event loop (``background``): the batches that fill up while calls
are in flight, and the results a run stores with ``store_result()`` (a dialogue, a judgement),
go to one writer thread, in the order they were made; ``flush()`` and ``event()`` wait for it
first. The order, and so every guarantee above, is the same as with writes on the loop: only the
loop no longer stops for them. The writes waiting when the writer wakes are committed together
(group commit): a result and the ledger rows of its calls in one transaction, and with many
dialogues in flight one commit for several of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.pool import SingletonThreadPool, StaticPool

from ..core.runs import EventKind
from ..errors import BudgetExceeded, one_line
from ..models.base import ChatModel, Completion, Message, Sampling, ToolParams, complete
from ..store import Store
from ..store.tables import utcnow
from .cache import ResponseCache

RUN_WRITE_BATCH = 64  # rows a grow or eval run holds before writing them
T = TypeVar("T")


def can_write_from_a_thread(*stores: Store | None) -> bool:
    """Whether writes to these stores may go through another thread: not where the whole engine
    is one connection (an in-memory SQLite database), which two threads must not share."""
    return all(s is None or not isinstance(s.engine.pool, StaticPool | SingletonThreadPool) for s in stores)


class GroupWriter:
    """One thread that runs writes in the order they were submitted. The writes waiting when it
    wakes run in one transaction per store (``Store.transaction``), so a burst of results costs one
    commit; if that transaction fails, each write of the group runs again on its own, so only the
    one that failed reports an error.

    The thread ends once it has been idle for ``idle`` seconds and starts again with the next
    write: it is not a daemon (a process that exits waits for the writes it was given), and an idle
    one keeps a finished process alive for at most ``idle`` (a thread costs far less to start
    than a model call takes).
    """

    def __init__(self, stores: Sequence[Store], *, idle: float = 0.1) -> None:
        # The first store (the ledger's: rows and results) is entered last, so it commits first
        # (an ExitStack unwinds in reverse): killed between two databases' commits, a run has
        # recorded calls whose responses are not cached (made again), never the other way round.
        self.stores = list(dict.fromkeys(reversed(stores)))
        self.idle = idle
        self._queue: queue.SimpleQueue[list[tuple[Callable[[], Any], Future[Any]]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # The first error of a write nobody waits for (a batch of ledger rows): raised to the run
        # at its next write or flush. Set by the writer thread only.
        self.failure: BaseException | None = None

    def submit(self, *works: Callable[[], Any]) -> list[Future[Any]]:
        """Futures of ``works``, which run in order and always in the same group."""
        jobs: list[tuple[Callable[[], Any], Future[Any]]] = [(w, Future()) for w in works]
        with self._lock:
            self._queue.put(jobs)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="strategist-writer")
                self._thread.start()
        return [f for _, f in jobs]

    def _serve(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle)
            except queue.Empty:
                with self._lock:  # submit() puts under this lock: nothing can slip in between
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            group = list(first)
            with contextlib.suppress(queue.Empty):
                while True:
                    group += self._queue.get_nowait()
            self._run(group)

    def _run(self, group: list[tuple[Callable[[], Any], Future[Any]]]) -> None:
        # A write whose waiter gave up before it started (a cancelled run) is not made.
        group = [(w, f) for w, f in group if f.set_running_or_notify_cancel()]
        if len(group) > 1 and self._run_together(group):
            return
        for work, future in group:
            try:
                future.set_result(work())
            except BaseException as exc:
                if self.failure is None:
                    self.failure = exc
                future.set_exception(exc)

    def _run_together(self, group: list[tuple[Callable[[], Any], Future[Any]]]) -> bool:
        """The group in one transaction per store; False (all rolled back) if any write failed."""
        try:
            with contextlib.ExitStack() as stack:
                for store in self.stores:
                    stack.enter_context(store.transaction())
                results = [work() for work, _ in group]
        except Exception:
            return False
        for (_, future), result in zip(group, results, strict=True):
            future.set_result(result)
        return True

    def wait(self) -> None:
        """Return once every write submitted so far is made (they run in order: the last one)."""
        (barrier,) = self.submit(lambda: None)
        barrier.result()


@dataclass(frozen=True)
class Budget:
    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None  # counts calls whose price is known (litellm's table)


@dataclass
class Ledger:
    """Counts a run's calls and tokens, stops it at its budget, and records each call.

    The check happens before a call, so a run can end one call past ``max_tokens``, never more.
    Cache hits are recorded (marked) but cost nothing, so they count against no budget.
    """

    store: Store | None = None
    run_id: int | None = None
    budget: Budget = field(default_factory=Budget)
    calls: int = 0
    tokens: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0
    per_model_concurrency: int | None = None
    unpriced: set[str] = field(default_factory=set)
    _limits: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    cache: ResponseCache | None = None
    # Rows held before one write. 1 (the default) writes each call's rows at once; runs, which
    # flush at every event and at their end, hold more.
    write_batch: int = 1
    write_interval: float = 0.5
    # Batches and stored results written by one writer thread instead of on the event loop.
    background: bool = False
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _oldest: float | None = None
    _writer: GroupWriter | None = None

    def _take(self) -> tuple[list[dict[str, Any]], Any]:
        """The buffered rows and cached responses, handed over (the buffers start empty again)."""
        rows, self._pending = self._pending, []
        items = self.cache.take() if self.cache is not None else None
        self._oldest = None
        return rows, items

    def _write(self, rows: list[dict[str, Any]], items: Any) -> None:
        """The rows first: a process killed between the two writes has then recorded calls it
        cannot replay (a resumed run makes them again, and records them again), never replays
        calls it has not recorded."""
        if rows:
            assert self.store is not None
            self.store.record_calls(rows)
        if items and self.cache is not None:
            self.cache.write(items)

    def _submit(self, *works: Callable[[], Any]) -> list[Future[Any]]:
        self._raise_failed(wait=False)
        if self._writer is None:
            stores = [s for s in (self.store, self.cache.store if self.cache is not None else None) if s]
            self._writer = GroupWriter(stores)
        return self._writer.submit(*works)

    def _raise_failed(self, *, wait: bool) -> None:
        """Raise the first error of a write the writer thread failed (waiting for every write
        first if ``wait``): it runs at every write submitted, so it reads one attribute."""
        writer = self._writer
        if writer is None:
            return
        if wait:
            writer.wait()
        failure, writer.failure = writer.failure, None
        if failure is not None:
            raise failure

    def flush(self) -> None:
        """Write every buffered ledger row and cached response now, after whatever the writer
        thread still has to write."""
        self._raise_failed(wait=True)
        self._write(*self._take())

    async def store_result(self, store: Callable[[], T]) -> T:
        """``store()`` (it stores what calls produced), after every buffered row is written: on the
        writer thread for a run (the loop goes on with other calls meanwhile), else right here."""
        if not self.background:
            self.flush()
            return store()
        rows, items = self._take()
        # One group, so one commit for both; the rows are written even if the wait is cancelled.
        _, stored = self._submit(lambda: self._write(rows, items), store)
        result: T = await asyncio.wrap_future(stored)
        return result

    def event(
        self,
        kind: EventKind,
        message: str,
        *,
        round: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record a run event, after the calls that led to it."""
        self.flush()
        assert self.store is not None
        self.store.record_event(self.run_id, kind, message, round=round, detail=detail)

    def _maybe_flush(self) -> None:
        if self._oldest is None:
            return
        waiting = max(len(self._pending), self.cache.pending if self.cache is not None else 0)
        if waiting >= self.write_batch or time.monotonic() - self._oldest >= self.write_interval:
            if self.background:
                rows, items = self._take()
                self._submit(lambda: self._write(rows, items))
            else:
                self.flush()

    def check(self) -> None:
        b = self.budget
        if b.max_calls is not None and self.calls >= b.max_calls:
            raise BudgetExceeded("calls", self.calls, b.max_calls)
        if b.max_tokens is not None and self.tokens >= b.max_tokens:
            raise BudgetExceeded("tokens", self.tokens, b.max_tokens)
        if b.max_cost_usd is not None and self.cost_usd >= b.max_cost_usd:
            raise BudgetExceeded("cost (USD)", self.cost_usd, float(b.max_cost_usd))

    def limit(self, model: str) -> asyncio.Semaphore | contextlib.nullcontext[None]:
        """The per-model concurrency limit, shared by every role that uses the same model."""
        if self.per_model_concurrency is None:
            return contextlib.nullcontext()
        if model not in self._limits:
            self._limits[model] = asyncio.Semaphore(self.per_model_concurrency)
        return self._limits[model]

    def record(
        self,
        role: str,
        model: str,
        completion: Completion | None,
        latency_ms: float,
        error: str | None = None,
    ) -> None:
        hit = completion is not None and completion.cache_hit
        if hit:
            self.cache_hits += 1
        else:
            self.calls += 1
            if completion is not None:
                self.tokens += completion.total_tokens
                if completion.cost_usd is not None:
                    self.cost_usd += completion.cost_usd
                elif model not in self.unpriced:
                    self.unpriced.add(model)
                    if self.budget.max_cost_usd is not None and self.store is not None:
                        self.store.record_event(  # not event(): this call's row is not written yet
                            self.run_id,
                            "info",
                            f"price of {model} is unknown: --max-cost counts only the calls of priced models",
                        )
        if self.store is not None:
            # The columns of LlmCallRow as a plain dict: building the SQLModel object would cost
            # more than the rest of this method.
            self._pending.append(
                {
                    "run_id": self.run_id,
                    "role": role,
                    "model": model,
                    "prompt_tokens": completion.prompt_tokens if completion else 0,
                    "completion_tokens": completion.completion_tokens if completion else 0,
                    "latency_ms": completion.latency_ms
                    if completion and completion.latency_ms
                    else latency_ms,
                    "cache_hit": completion.cache_hit if completion else False,
                    "cost_usd": None if completion is None or completion.cache_hit else completion.cost_usd,
                    "ok": error is None,
                    "error": error,
                    "created_at": utcnow(),
                }
            )
        if self._oldest is None and (self._pending or (self.cache is not None and self.cache.pending)):
            self._oldest = time.monotonic()
        self._maybe_flush()

    def wrap(self, model: ChatModel, role: str) -> LedgeredModel:
        return LedgeredModel(model, role, self)


class LedgeredModel(ChatModel):
    def __init__(self, inner: ChatModel, role: str, ledger: Ledger) -> None:
        self.inner = inner
        self.role = role
        self.ledger = ledger
        self.name = inner.name

    @property
    def cache_identity(self) -> str:
        return self.inner.cache_identity

    async def complete(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> Completion:
        cache = self.ledger.cache
        # Cached under what decides the answers (for a local model, its file), not the name alone;
        # the ledger rows still carry the name.
        ident = self.inner.cache_identity if cache is not None else self.name
        key = cache.key(ident, messages, sampling or Sampling(), tools) if cache is not None else None
        if cache is not None and key is not None:
            hit = cache.get(key, ident)
            if hit is not None:
                self.ledger.record(self.role, self.name, hit, 0.0)
                return hit
        async with self.ledger.limit(self.name):
            self.ledger.check()
            start = time.perf_counter()
            try:
                c = await complete(self.inner, messages, sampling, tools)
            except Exception as exc:
                latency = (time.perf_counter() - start) * 1000
                self.ledger.record(self.role, self.name, None, latency, one_line(exc))
                raise
        if cache is not None and key is not None:
            cache.put(key, ident, c)  # written with the ledger row that follows
        self.ledger.record(self.role, self.name, c, (time.perf_counter() - start) * 1000)
        return c

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return self.inner.price(prompt_tokens, completion_tokens)

    def count_tokens(self, text: str) -> int | None:
        return self.inner.count_tokens(text)

    async def aclose(self) -> None:
        await self.inner.aclose()
