"""Every model call goes through a LedgeredModel: budget check first, a ledger row after."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import BudgetExceeded, one_line
from ..models.base import ChatModel, Completion, Message, Sampling
from ..store import Store
from ..store.tables import LlmCallRow
from .cache import ResponseCache


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
                        self.store.record_event(
                            self.run_id,
                            "info",
                            f"price of {model} is unknown: --max-cost counts only the calls of priced models",
                        )
        if self.store is not None:
            self.store.record_call(
                LlmCallRow(
                    run_id=self.run_id,
                    role=role,
                    model=model,
                    prompt_tokens=completion.prompt_tokens if completion else 0,
                    completion_tokens=completion.completion_tokens if completion else 0,
                    latency_ms=completion.latency_ms if completion and completion.latency_ms else latency_ms,
                    cache_hit=completion.cache_hit if completion else False,
                    cost_usd=None if completion is None or completion.cache_hit else completion.cost_usd,
                    ok=error is None,
                    error=error,
                )
            )

    def wrap(self, model: ChatModel, role: str) -> LedgeredModel:
        return LedgeredModel(model, role, self)


class LedgeredModel(ChatModel):
    def __init__(self, inner: ChatModel, role: str, ledger: Ledger) -> None:
        self.inner = inner
        self.role = role
        self.ledger = ledger
        self.name = inner.name

    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> Completion:
        cache = self.ledger.cache
        key = cache.key(self.name, messages, sampling or Sampling()) if cache is not None else None
        if cache is not None and key is not None:
            hit = cache.get(key)
            if hit is not None:
                self.ledger.record(self.role, self.name, hit, 0.0)
                return hit
        async with self.ledger.limit(self.name):
            self.ledger.check()
            start = time.perf_counter()
            try:
                c = await self.inner.complete(messages, sampling)
            except Exception as exc:
                latency = (time.perf_counter() - start) * 1000
                self.ledger.record(self.role, self.name, None, latency, one_line(exc))
                raise
        if cache is not None and key is not None:
            cache.put(key, self.name, c)
        self.ledger.record(self.role, self.name, c, (time.perf_counter() - start) * 1000)
        return c

    async def aclose(self) -> None:
        await self.inner.aclose()
