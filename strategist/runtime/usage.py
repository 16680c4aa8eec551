"""How often each strategy is retrieved (``strategies.times_retrieved``), counted in memory and
written in batches."""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store import Store


class UsageCounter:
    """Counts how often each strategy is retrieved and adds the counts to the database in
    batches (``strategies.times_retrieved``), from a background thread, never one write per call."""

    def __init__(self, store: Store, *, flush_every: int = 256, flush_seconds: float = 5.0) -> None:
        self.store = store
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._counts: Counter[int] = Counter()
        self._lock = threading.Lock()  # guards the counts; held only briefly
        self._write_lock = threading.Lock()  # one batch written at a time
        self._last = time.monotonic()
        self._flushing = False
        self.flushes = 0  # batches written, for tests and curiosity

    @property
    def pending(self) -> dict[int, int]:
        with self._lock:
            return dict(self._counts)

    def record(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._counts.update(ids)
            due = sum(self._counts.values()) >= self.flush_every or (
                self._counts and time.monotonic() - self._last >= self.flush_seconds
            )
            start = due and not self._flushing
            if start:
                self._flushing = True
        if start:
            threading.Thread(target=self._flush_in_background, name="strategist-usage", daemon=True).start()

    def flush(self) -> None:
        """Write what has been counted so far, now (after any write already under way)."""
        with self._write_lock:
            with self._lock:
                counts, self._counts = self._counts, Counter()
                self._last = time.monotonic()
            if not counts:
                return
            try:
                self.store.add_retrieval_counts(counts)
            except Exception:
                with self._lock:  # keep them for the next attempt
                    self._counts.update(counts)
                raise
            self.flushes += 1

    def _flush_in_background(self) -> None:
        try:
            self.flush()
        except Exception:  # counters must never break retrieval; they are retried next time
            pass
        finally:
            with self._lock:
                self._flushing = False


#: The counters of libraries still open; written at exit by scripts that never close theirs.
open_counters: weakref.WeakSet[UsageCounter] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    # A script that never closes its library still keeps its counts.
    for counter in list(open_counters):
        with contextlib.suppress(Exception):
            counter.flush()
