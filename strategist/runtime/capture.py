"""Capturing the conversations ``serve`` answers (``serve --capture``), for offline judging and
harvesting.

A request's handler only appends what it answered to an in-memory queue (``record``: no
database, no redaction, no hashing on the request's path). A writer thread takes the queue in
batches, redacts each conversation (tool arguments and results too), finds the stored
conversation it continues, and writes the batch in one transaction. A conversation is one row:
each request brings the conversation so far, and is matched to the row whose latest exchange it
extends (a digest of the exchange, taken before redaction), or to the conversation id the client
sent in the ``x-strategist-conversation`` header. Nothing is dropped: the queue has no bound,
and ``close`` writes what is left (serve calls it on shutdown).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..redact import Redactor

if TYPE_CHECKING:
    from ..store import Store

CONVERSATION_HEADER = "x-strategist-conversation"


@dataclass
class _Exchange:
    messages: list[dict[str, Any]]  # the request's messages (as the client sent them)
    reply: dict[str, Any]  # the assistant message returned
    refs: list[str]  # strategies in the prompt that produced the reply
    key: str | None
    meta: dict[str, Any]


def _normal(m: Mapping[str, Any]) -> list[Any]:
    """What identifies a message when a client sends a conversation back: role, words, calls."""
    content = m.get("content")
    if isinstance(content, list):
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    calls = [
        [(c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments")]
        for c in m.get("tool_calls") or []
        if isinstance(c, Mapping)
    ]
    return [m.get("role"), " ".join(str(content or "").split()), calls, m.get("tool_call_id")]


def _digest(messages: Sequence[Mapping[str, Any]]) -> str:
    body = json.dumps([_normal(m) for m in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _conversation(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The messages that make the conversation (the system prompt is the bot's, not the customer's)."""
    return [m for m in messages if m.get("role") not in ("system", "developer")]


class TrafficRecorder:
    """Queues answered requests and writes them, redacted, in batches from a background thread.

    ``flush_every``: a batch is written once this many exchanges wait; ``flush_seconds``: or once
    the oldest has waited this long."""

    def __init__(
        self,
        store: Store,
        domain_id: str,
        *,
        redactor: Redactor | None = None,
        flush_every: int = 64,
        flush_seconds: float = 0.5,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.domain_id = domain_id
        self.redactor = redactor or Redactor()
        self.flush_every = max(1, flush_every)
        self.flush_seconds = flush_seconds
        self.meta = dict(meta or {})
        self._queue: list[_Exchange] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.recorded = 0  # exchanges handed to record()
        self.written = 0  # exchanges stored
        self.batches = 0
        self.errors: list[str] = []  # batches that failed to write (kept and retried)

    # -- the request's side: no I/O ------------------------------------------------------------
    def record(
        self,
        messages: Sequence[Mapping[str, Any]],
        reply: Mapping[str, Any],
        refs: Sequence[str],
        *,
        conversation: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        item = _Exchange([dict(m) for m in messages], dict(reply), list(refs), conversation, dict(meta or {}))
        with self._cond:
            self._queue.append(item)
            self.recorded += 1
            if len(self._queue) >= self.flush_every:
                self._cond.notify()
        if self._thread is None:
            self.start()

    # -- the writer ----------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="strategist-capture", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(self.flush_seconds)
                if self._queue and len(self._queue) < self.flush_every and not self._closed:
                    self._cond.wait(self.flush_seconds)  # let a batch fill up, half a second at most
                if self._closed and not self._queue:
                    return
            try:
                self.flush()
            except Exception as exc:  # keep serving; the batch stays queued and is retried
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(min(5.0, self.flush_seconds * 2))

    def flush(self) -> int:
        """Write everything queued now; returns how many exchanges were written."""
        with self._write_lock:
            with self._cond:
                batch, self._queue = self._queue, []
            if not batch:
                return 0
            try:
                self.store.capture([self._prepare(x) for x in batch])
            except Exception:
                with self._cond:  # back to the front of the queue, in order
                    self._queue[:0] = batch
                raise
            self.written += len(batch)
            self.batches += 1
            return len(batch)

    def _prepare(self, x: _Exchange) -> Any:
        from ..store.conversations import CapturedExchange

        convo = _conversation(x.messages)
        full = [*convo, x.reply]
        before = list(convo)
        while before and before[-1].get("role") != "assistant":
            before.pop()  # the new customer message (or tool results) this request brought
        redacted, counts = self.redactor.redact_messages(full)
        strategies: list[list[str]] = [[] for _ in full]
        strategies[-1] = list(x.refs)
        return CapturedExchange(
            domain_id=self.domain_id,
            messages=redacted,
            strategies=strategies,
            exchange_hash=_digest(full),
            previous_hash=_digest(before) if before else None,
            conversation_key=x.key,
            meta={**self.meta, **x.meta},
            redactions=dict(counts),
        )

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued and stop the writer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()
