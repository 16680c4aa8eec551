"""Held-out evaluation: every scenario of a split, with the same customer seeds, under three
conditions: no strategies, a generic checklist, and the library (retrieved per turn)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..core.dialogue import StrategyText, Turn
from ..core.domain import Domain, Scenario
from ..core.evaluation import GENERIC_GUIDELINES, ConditionSummary, Outcome, compare, summarise
from ..core.seeds import derive_seed
from ..errors import StrategistError, one_line
from ..models.base import ChatModel
from ..roles.student import agent_messages
from ..store import Store
from ..tools.base import ToolEnvironment
from .ledger import Budget
from .runner import Reporter, Runner

CONDITIONS = ("none", "generic", "library")
GENERIC = [StrategyText(trigger=t, guidance=g) for t, g in GENERIC_GUIDELINES]


@dataclass(frozen=True)
class EvalConfig:
    split: str = "test"
    samples: int = 3
    seed: int = 0
    max_turns: int | None = None
    pass_threshold: float = 0.8
    include_pending: bool = False
    limit: int | None = None  # only the first N scenarios of the split, by id (a quick trial)
    max_tool_steps: int | None = None  # tool steps per agent turn (default: the domain's tools.max_steps)
    concurrency: int = 1
    cache: bool = True
    budget: Budget = field(default_factory=Budget)


@dataclass
class ScenarioRow:
    scenario_id: int
    title: str
    intent: str
    means: dict[str, float | None]
    delta_none: dict[str, Any] | None
    dialogues: dict[str, list[int]]


@dataclass
class EvalResult:
    run_id: int
    domain: str
    split: str
    samples: int
    student_model: str
    library_student_models: list[str]
    judge_model: str
    include_pending: bool
    strategies_available: int
    conditions: list[ConditionSummary]
    library_vs_none: dict[str, Any] | None
    library_vs_generic: dict[str, Any] | None
    scenarios: list[ScenarioRow]
    failures: int
    llm_calls: int
    cache_hits: int
    seconds: float
    # How well the dialogues could be judged (see Store.judging_counts); flagged dialogues (the
    # simulated customer broke character) are left out of every comparison above.
    dialogues_run: int = 0
    unjudged: int = 0
    partial_judgements: int = 0
    flagged_dialogues: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _paired(result: Any) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "mean": result.mean,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "n": result.n,
        "confidence": result.confidence,
    }


class Evaluator(Runner):
    def __init__(
        self,
        store: Store,
        domain: Domain,
        *,
        student: ChatModel,
        customer: ChatModel,
        judge: ChatModel,
        library: Any,
        config: EvalConfig,
        reporter: Reporter | None = None,
        cache_store: Store | None = None,
        tools: ToolEnvironment | Literal["domain"] | None = "domain",
    ) -> None:
        models = {"student": student.name, "customer": customer.name, "judge": judge.name}
        super().__init__(
            store,
            domain,
            store.start_run(domain.id, "eval", {**asdict(config), "models": models}),
            student=student,
            customer=customer,
            judge=judge,
            settings=config,
            cache_store=cache_store,
            reporter=reporter,
            tools=tools,
        )
        self.config = config
        self.library = library

    def _library_picker(self) -> Any:
        def pick(turns: Sequence[Turn]) -> list[StrategyText]:
            msgs = agent_messages("", turns)[1:]
            found = self.library.retrieve(
                msgs, domain=self.domain.id, include_pending=self.config.include_pending
            )
            return list(found.texts)

        return pick

    async def _one(self, scenario: Scenario, sample: int, condition: str) -> Outcome | None:
        assert scenario.id is not None
        seed = derive_seed(self.config.seed, "eval", scenario.id, sample)
        strategies: Any = {"none": [], "generic": GENERIC, "library": self._library_picker()}[condition]
        d = await self._simulate(
            scenario,
            seed=seed,
            sample=sample,
            condition=f"eval:{condition}",
            strategies=strategies,
            round_no=None,
        )
        self.reporter.advance()
        j = (await self._judge_dialogue(scenario, d, seed=seed, round_no=None)).judgement
        if j is None or j.faults:
            return None
        actions = [c for c in j.checks if c.is_action]
        return Outcome(
            scenario.id,
            sample,
            condition,
            j.score,
            sum(c.passed for c in j.checks),
            len(j.checks),
            d.id,
            actions_passed=sum(c.passed for c in actions),
            actions_total=len(actions),
        )

    async def run(self) -> EvalResult:
        start = time.perf_counter()
        scenarios = self.store.list_scenarios(self.domain.id, split=self.config.split)
        if self.config.limit is not None:
            scenarios = scenarios[: self.config.limit]
        if not scenarios:
            raise StrategistError(
                f"domain '{self.domain.id}' has no {self.config.split} scenarios "
                "(assign splits with: strategist scenarios split)"
            )
        jobs = [(s, k, c) for s in scenarios for k in range(self.config.samples) for c in CONDITIONS]
        self.reporter.stage(f"evaluating {len(scenarios)} {self.config.split} scenarios", len(jobs))
        try:
            await self._open_tools()
            results = await self._all([self._one(s, k, c) for s, k, c in jobs])
        except BaseException as exc:
            self.ledger.flush()
            self.store.finish_run(self.run_id, "failed", {}, stop_reason=one_line(exc))
            raise
        finally:
            await self._close_tools()
        outcomes = [o for o in results if o is not None]
        result = self._result(scenarios, outcomes, time.perf_counter() - start)
        self.store.finish_run(self.run_id, "completed", result.as_dict())
        return result

    def _result(self, scenarios: list[Scenario], outcomes: list[Outcome], seconds: float) -> EvalResult:
        cfg = self.config
        k = cfg.samples
        rows = []
        for s in scenarios:
            assert s.id is not None
            mine = [o for o in outcomes if o.scenario_id == s.id]
            means: dict[str, float | None] = {}
            dialogues: dict[str, list[int]] = {}
            for c in CONDITIONS:
                scores = [o.score for o in mine if o.condition == c]
                means[c] = sum(scores) / len(scores) if scores else None
                dialogues[c] = [o.dialogue_id for o in mine if o.condition == c and o.dialogue_id is not None]
            seed = derive_seed(cfg.seed, "scenario-ci", s.id)
            rows.append(
                ScenarioRow(
                    s.id,
                    s.title,
                    s.intent,
                    means,
                    _paired(compare(mine, "library", "none", seed=seed)),
                    dialogues,
                )
            )
        statuses = ["approved", "pending"] if cfg.include_pending else ["approved"]
        available = self.store.list_strategies(self.domain.id, statuses)
        grown_with = sorted(
            {str(r.provenance.get("student_model")) for r in available if r.provenance.get("student_model")}
        )
        self.ledger.flush()  # every call row is written here: the totals below read them
        totals = self.store.call_totals(self.run_id)
        judging = self.store.judging_counts(self.run_id)
        return EvalResult(
            run_id=self.run_id,
            domain=self.domain.id,
            split=cfg.split,
            samples=k,
            student_model=self.student.model.name,
            library_student_models=grown_with,
            judge_model=self.judge.model.name,
            include_pending=cfg.include_pending,
            strategies_available=len(available),
            conditions=[summarise(outcomes, c, k, cfg.pass_threshold) for c in CONDITIONS],
            library_vs_none=_paired(compare(outcomes, "library", "none", seed=cfg.seed)),
            library_vs_generic=_paired(compare(outcomes, "library", "generic", seed=cfg.seed)),
            scenarios=rows,
            failures=self.store.failure_count(self.run_id),
            llm_calls=totals["calls"],
            cache_hits=totals["cache_hits"],
            seconds=round(seconds, 1),
            dialogues_run=judging["dialogues"],
            unjudged=judging["unjudged"],
            partial_judgements=judging["partial"],
            flagged_dialogues=judging["flagged"],
        )
