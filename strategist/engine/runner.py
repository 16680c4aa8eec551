"""What a grow run and an evaluation share: the run's ledger and cache, the roles on ledgered
models, the concurrency limit, and one step that simulates, stores and judges a dialogue,
recording every failure as an event instead of raising it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from ..core.dialogue import Dialogue, Judgement, StrategyText
from ..core.domain import Domain, Scenario
from ..core.runs import EventKind
from ..core.tools import ToolSpec
from ..errors import ModelError, ToolsUnavailableError, one_line
from ..models.base import ChatModel, ToolParams
from ..roles import Customer, Judge, Student
from ..store import Store
from ..tools.base import ToolEnvironment, Toolset
from .cache import ResponseCache
from .concurrency import run_all
from .ledger import RUN_WRITE_BATCH, Budget, Ledger, can_write_from_a_thread
from .simulate import DEFAULT_TOOL_STEPS, StrategyPicker, simulate

T = TypeVar("T")
ReportStyle = Literal["", "heading", "warning", "success"]


class Reporter(Protocol):
    """How the engine tells a user interface what it is doing."""

    def stage(self, name: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def log(self, message: str, *, style: ReportStyle = "") -> None:
        """``message`` is plain text (never markup); ``style`` says how to show it."""
        ...


class NullReporter:
    def stage(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def log(self, message: str, *, style: ReportStyle = "") -> None:
        pass


@dataclass
class Scored:
    dialogue: Dialogue
    judgement: Judgement | None


def tools_for(domain: Domain) -> ToolEnvironment | None:
    """The environment of the domain's tools (nothing starts yet), or None without tools."""
    if domain.tools is None:
        return None
    from ..tools import environment_from_config

    return environment_from_config(domain.tools, source=f"domain '{domain.id}'")


class RunSettings(Protocol):
    """What a run's settings (GrowConfig, EvalConfig) tell the parts every run shares: its
    budget, whether identical requests replay from the cache, dialogues at once, the caps on
    agent turns and on tool steps per turn."""

    @property
    def budget(self) -> Budget: ...
    @property
    def cache(self) -> bool: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def max_turns(self) -> int | None: ...
    @property
    def max_tool_steps(self) -> int | None: ...


class Runner:
    """The parts of a run every command needs. Subclasses add what their run does."""

    def __init__(
        self,
        store: Store,
        domain: Domain,
        run_id: int,
        *,
        student: ChatModel,
        customer: ChatModel,
        judge: ChatModel,
        settings: RunSettings,
        cache_store: Store | None = None,
        reporter: Reporter | None = None,
        tools: ToolEnvironment | Literal["domain"] | None = "domain",
    ) -> None:
        self.store = store
        self.domain = domain
        self.run_id = run_id
        self.max_turns = settings.max_turns
        self.reporter: Reporter = reporter or NullReporter()
        # The cache may live in its own database, shared by runs on different libraries.
        self.ledger = Ledger(
            store,
            run_id,
            settings.budget,
            cache=ResponseCache(cache_store or store) if settings.cache else None,
            per_model_concurrency=getattr(settings, "per_model_concurrency", None),
            write_batch=RUN_WRITE_BATCH,
            background=can_write_from_a_thread(store, cache_store),
        )
        self.student = Student(self.ledger.wrap(student, "student"), domain)
        self.customer = Customer(self.ledger.wrap(customer, "customer"), domain)
        self.judge = Judge(self.ledger.wrap(judge, "judge"), domain)
        self._sem = asyncio.Semaphore(max(1, settings.concurrency))
        # The domain's tools (its pack's tools: section) unless the caller brings an environment.
        if tools == "domain":
            tools = tools_for(domain)
        self.tools: ToolEnvironment | None = tools
        config = domain.tools
        self.max_tool_steps = settings.max_tool_steps or (config.max_steps if config else DEFAULT_TOOL_STEPS)
        self.tool_specs: list[ToolSpec] = []

    async def _open_tools(self) -> None:
        """Start the tool servers (a one-line ToolsUnavailableError if they cannot start)."""
        if self.tools is not None:
            await self.tools.start()
            self.tool_specs = await self.tools.list_tools()

    async def _close_tools(self) -> None:
        if self.tools is not None:
            await self.tools.aclose()

    @property
    def tool_params(self) -> ToolParams | None:
        return ToolParams(tuple(s.to_openai() for s in self.tool_specs)) if self.tool_specs else None

    async def _all(self, aws: Sequence[Awaitable[T]]) -> list[T]:
        return await run_all(aws, self._sem)

    def _failure(
        self,
        what: str,
        exc: BaseException,
        *,
        kind: EventKind = "failure",
        round_no: int | None = None,
        **detail: Any,
    ) -> None:
        """Record a failed step as an event (with a structured-output error's attempts) and say so."""
        detail = {k: v for k, v in detail.items() if v is not None}
        for attr in ("attempts", "last_output", "last_error"):
            if hasattr(exc, attr):
                detail[attr] = getattr(exc, attr)
        self.ledger.event(kind, f"{what}: {one_line(exc)}", round=round_no, detail=detail)
        self.reporter.log(f"failure {what}: {one_line(exc)}", style="warning")

    async def _simulate(
        self,
        scenario: Scenario,
        *,
        seed: int,
        sample: int,
        condition: str,
        strategies: Sequence[StrategyText] | StrategyPicker,
        round_no: int | None,
        candidate_id: int | None = None,
    ) -> Dialogue:
        """One dialogue, stored as soon as it ends; one that a model error ended is recorded."""

        async def run(toolset: Toolset | None) -> Dialogue:
            return await simulate(
                scenario,
                self.domain,
                self.student,
                self.customer,
                seed=seed,
                sample=sample,
                condition=condition,
                strategies=strategies,
                max_turns=self.max_turns,
                tools=toolset,
                tool_specs=self.tool_specs,
                max_tool_steps=self.max_tool_steps,
            )

        if self.tools is None:
            d = await run(None)
        else:
            # A state of its own for every dialogue; the key only has to be unique.
            where = f"{condition}/{scenario.id}/{sample}/{candidate_id}"
            key = f"strategist/{self.run_id}/{where}/{uuid.uuid4().hex[:12]}"
            try:
                async with self.tools.session(key) as toolset:
                    d = await run(toolset)
            except ToolsUnavailableError as exc:
                d = Dialogue(
                    scenario_id=scenario.id,
                    seed=seed,
                    sample=sample,
                    condition=condition,
                    turns=scenario.opening_turns,
                    ended_by="error",
                    error=one_line(exc),
                    student_model=self.student.model.name,
                    customer_model=self.customer.model.name,
                )
        # The calls before what they produced: a stored dialogue is never re-run.
        done, run_id = d, self.run_id
        d = await self.ledger.store_result(
            lambda: self.store.add_dialogue(done, run_id=run_id, round=round_no, candidate_id=candidate_id)
        )
        if d.error:
            self.ledger.event(
                "failure",
                f"dialogue {d.id} ended by a model error",
                round=round_no,
                detail={"dialogue_id": d.id, "error": d.error},
            )
        return d

    async def _judge_dialogue(
        self, scenario: Scenario, d: Dialogue, *, seed: int, round_no: int | None
    ) -> Scored:
        """The dialogue with its stored judgement, or with None when it could not be judged."""
        if d.error:
            return Scored(d, None)
        try:
            j = await self.judge.judge(scenario, d, seed=seed)
        except ModelError as exc:
            self._failure(
                f"judging dialogue {d.id}", exc, kind="judge_failure", round_no=round_no, dialogue_id=d.id
            )
            return Scored(d, None)
        return Scored(d, await self.ledger.store_result(lambda: self.store.add_judgement(j)))
