"""Growing a strategy library, round by round.

A round: (1) the teacher writes new scenarios for thin or weak persona x intent cells and
near-duplicates are dropped; (2) the student talks to simulated customers on the round's
scenarios and the judge scores every dialogue; (3) for the weak scenarios the teacher answers
from the weakest student turn's prefix and proposes strategies; similar ones are merged;
(4) every remaining candidate goes through the gate; accepted ones are stored as *pending*.
Everything is written as it happens, so a budget stop loses nothing already paid for.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

from ..core.cells import CellStats, pick_cells
from ..core.dialogue import Dialogue, StrategyText
from ..core.domain import Difficulty, Domain, Scenario
from ..core.evidence import GateEvidence, GatePair
from ..core.gate import GateConfig, decide
from ..core.runs import RunStatus
from ..core.seeds import derive_seed
from ..core.text import jaccard, most_similar
from ..errors import BudgetExceeded, ModelError, one_line
from ..models.base import ChatModel
from ..roles import Teacher
from ..store import Store
from ..store.tables import CandidateRow
from ..tools.base import ToolEnvironment
from .ledger import Budget
from .runner import NullReporter, Reporter, Runner, Scored

T = TypeVar("T")

__all__ = ["GrowConfig", "GrowSummary", "Grower", "NullReporter", "Reporter", "RoleModels"]
# Hard twice: the policy's traps are where a weak student needs strategies most.
DIFFICULTIES: tuple[Difficulty, ...] = ("hard", "medium", "hard", "easy")


@dataclass(frozen=True)
class GrowConfig:
    rounds: int = 1
    scenarios: int = 4  # scenarios worked on per round
    generate: int = 2  # of which the teacher writes this many new ones
    seed: int = 0
    weak_threshold: float = 0.8  # scenarios whose mean score is below this get coached
    max_strategies: int = 2  # proposals kept per coached scenario
    duplicate_threshold: float = 0.6  # scenario similarity at which a new one is dropped
    merge_threshold: float = 0.5  # strategy similarity at which a proposal is merged
    concurrency: int = 1
    per_model_concurrency: int | None = None  # calls in flight per model name, across roles
    cache: bool = True  # replay identical requests from the response cache
    max_turns: int | None = None  # cap on agent turns per dialogue, over the scenario's own limit
    max_tool_steps: int | None = None  # tool steps per agent turn (default: the domain's tools.max_steps)
    limit: int | None = None  # only the first N training scenarios (by id) are worked on
    harvest: int = 0  # scenarios harvested per round from its weak dialogues (worked on next round)
    harvest_below: float = 0.6  # dialogues scoring below this are harvested
    gate: GateConfig = field(default_factory=GateConfig)
    budget: Budget = field(default_factory=Budget)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GrowConfig:
        """Rebuild a run's settings from what ``runs.config`` recorded (for ``--resume``)."""
        known = {f for f in cls.__dataclass_fields__ if f not in ("gate", "budget")}
        return cls(
            **{k: v for k, v in d.items() if k in known},
            gate=GateConfig(**d.get("gate", {})),
            budget=Budget(**d.get("budget", {})),
        )


@dataclass
class RoleModels:
    teacher: ChatModel
    student: ChatModel
    customer: ChatModel
    judge: ChatModel


@dataclass
class GrowSummary:
    run_id: int
    status: RunStatus
    stop_reason: str | None
    rounds_completed: int
    scenarios_generated: int
    scenarios_used: int
    dialogues: int
    mean_score: float | None
    candidates: int
    accepted: int
    merged: int
    rejected: int
    failures: int
    llm_calls: int
    cache_hits: int
    tokens: int
    cost_usd: float
    unpriced_calls: int
    seconds: float
    accepted_ids: list[int] = field(default_factory=list)
    scenarios_harvested: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Grower(Runner):
    """One grow run. With ``resume_run`` it continues a run that was interrupted: every step whose
    result is stored is skipped, and what remains replays from the response cache where it can."""

    def __init__(
        self,
        store: Store,
        domain: Domain,
        models: RoleModels,
        config: GrowConfig,
        reporter: Reporter | None = None,
        *,
        resume_run: int | None = None,
        cache_store: Store | None = None,
        tools: ToolEnvironment | Literal["domain"] | None = "domain",
    ) -> None:
        if resume_run is None:
            run_id = store.start_run(domain.id, "grow", _config_dict(config, models))
        else:
            run_id = resume_run
            store.reopen_run(resume_run)
        super().__init__(
            store,
            domain,
            run_id,
            student=models.student,
            customer=models.customer,
            judge=models.judge,
            settings=config,
            cache_store=cache_store,
            reporter=reporter,
            tools=tools,
        )
        self.config = config
        self.teacher = Teacher(self.ledger.wrap(models.teacher, "teacher"), domain)
        self.rng = random.Random(config.seed)
        # Judged dialogues of this run, by (condition key, scenario id, sample); the no-strategy
        # ones are shared by every candidate's gate.
        self._done: dict[tuple[Any, int, int], Scored] = {}
        self._unjudgeable: set[int] = set()
        self.rounds_completed = 0
        if resume_run is not None:
            self._load_progress()

    def _load_progress(self) -> None:
        for candidate_id, d, j in self.store.run_dialogues(self.run_id):
            self._done[(candidate_id, d.scenario_id or 0, d.sample)] = Scored(d, j)
        self._unjudgeable = self.store.failed_dialogue_ids(self.run_id)

    # -- helpers ---------------------------------------------------------------------------
    def _seed(self, scenario_id: int, sample: int) -> int:
        return derive_seed(self.config.seed, "scenario", scenario_id, "sample", sample)

    async def _dialogue(
        self,
        round_no: int,
        scenario: Scenario,
        sample: int,
        strategies: Sequence[StrategyText] = (),
        candidate_id: int | None = None,
    ) -> Scored:
        """A judged dialogue: stored ones are reused (resume), new ones stored as they finish."""
        assert scenario.id is not None
        key = (candidate_id, scenario.id, sample)
        if key in self._done:
            scored = self._done[key]
            d = scored.dialogue
            if scored.judgement is None and d.error is None and d.id not in self._unjudgeable:
                scored = await self._judge(round_no, scenario, d)
        else:
            d = await self._simulate(
                scenario,
                seed=self._seed(scenario.id, sample),
                sample=sample,
                condition="baseline" if candidate_id is None else "candidate",
                strategies=strategies,
                round_no=round_no,
                candidate_id=candidate_id,
            )
            scored = await self._judge(round_no, scenario, d)
        self._done[key] = scored
        return scored

    async def _judge(self, round_no: int, scenario: Scenario, d: Dialogue) -> Scored:
        scored = await self._judge_dialogue(scenario, d, seed=d.seed, round_no=round_no)
        if scored.judgement is None and d.id is not None and not d.error:
            self._unjudgeable.add(d.id)
        return scored

    async def _baseline(self, round_no: int, scenario: Scenario, sample: int) -> Scored:
        return await self._dialogue(round_no, scenario, sample)

    async def _counted(self, aw: Awaitable[T]) -> T:
        result = await aw
        self.reporter.advance()
        return result

    # -- the run ---------------------------------------------------------------------------
    async def run(self) -> GrowSummary:
        start = time.perf_counter()
        status: RunStatus = "completed"
        reason: str | None = None
        try:
            await self._open_tools()
            for round_no in range(1, self.config.rounds + 1):
                self.reporter.log(f"round {round_no}/{self.config.rounds}", style="heading")
                await self._round(round_no)
                self.rounds_completed = round_no
        except BudgetExceeded as exc:
            status, reason = "stopped", one_line(exc)
            self.ledger.event("budget", reason)
            self.reporter.log(f"stopped: {reason}", style="warning")
        except BaseException as exc:
            # Interrupted or crashed: record it so the run never stays 'running' forever.
            self.store.finish_run(
                self.run_id,
                "failed",
                self._summary(start, "failed", one_line(exc)).as_dict(),
                stop_reason=one_line(exc),
            )
            raise
        finally:
            await self._close_tools()
        summary = self._summary(start, status, reason)
        if summary.dialogues and not self.store.run_counts(self.run_id)["judged"]:
            # Every dialogue failed (a wrong api_base, an unsupported json_mode, ...): say so.
            status = "failed"
            reason = f"no dialogue could be judged; see: strategist runs show {self.run_id}"
            summary.status, summary.stop_reason = status, reason
        self.store.finish_run(self.run_id, status, summary.as_dict(), stop_reason=reason)
        return summary

    async def _round(self, round_no: int) -> None:
        new = await self._generate(round_no)
        working = self._working_set(round_no, new)
        if not working:
            self.reporter.log("no scenarios to work on")
            return
        samples = self.config.gate.samples
        self.reporter.stage(f"round {round_no}: dialogues", len(working) * samples)
        results = await self._all(
            [self._counted(self._baseline(round_no, s, k)) for s in working for k in range(samples)]
        )
        weak = []
        for i, s in enumerate(working):
            judged = [x for x in results[i * samples : (i + 1) * samples] if x.judgement is not None]
            if judged:
                mean = sum(x.judgement.score for x in judged if x.judgement) / len(judged)
                if mean < self.config.weak_threshold:
                    weak.append((mean, s, judged))
        weak.sort(key=lambda t: (t[0], t[1].id))
        self.reporter.log(f"{len(weak)} of {len(working)} scenarios below {self.config.weak_threshold:.2f}")
        if self.config.harvest:
            await self._harvest(round_no, working, results)

        for _mean, scenario, judged in weak:
            for cand in await self._coach(round_no, scenario, judged):
                await self._gate(round_no, scenario, cand)

    # -- harvesting (--harvest N) ------------------------------------------------------------
    async def _harvest(self, round_no: int, working: list[Scenario], results: list[Scored]) -> None:
        """Turn the round's weakest judged dialogues into scenarios (see engine/harvest.py); the
        next rounds work on them first."""
        from .harvest import HarvestConfig, Harvester

        left = self.config.harvest - len(self.store.scenarios_of_run(self.run_id, round_no, "harvested"))
        if left <= 0:  # resuming a round that harvested already
            return
        done = self.store.harvested_from("dialogue")
        samples = self.config.gate.samples
        weak = []
        for i, s in enumerate(working):
            judged = [x for x in results[i * samples : (i + 1) * samples] if x.judgement is not None]
            judged = [x for x in judged if x.judgement and x.judgement.score < self.config.harvest_below]
            judged = [x for x in judged if x.dialogue.id not in done and not x.dialogue.error]
            if judged:
                worst = min(
                    judged, key=lambda x: (x.judgement.score if x.judgement else 1.0, x.dialogue.sample)
                )
                assert worst.judgement is not None
                weak.append((worst.dialogue, worst.judgement, s))
        weak.sort(key=lambda t: (t[1].score, t[0].id or 0))
        if not weak:
            return
        self.reporter.stage(f"round {round_no}: harvesting scenarios", min(left, len(weak)))
        config = HarvestConfig(
            below=self.config.harvest_below,
            max=left,
            duplicate_threshold=self.config.duplicate_threshold,
            seed=self.config.seed,
        )
        harvester = Harvester(
            self.store,
            self.domain,
            self.teacher,
            config,
            run_id=self.run_id,
            round_no=round_no,
            ledger=self.ledger,
            reporter=self.reporter,
        )
        result = await harvester.from_dialogues(weak)
        self.reporter.log(
            f"harvested {len(result.added)} scenarios from weak dialogues"
            + (f" ({len(result.duplicates)} near-duplicates dropped)" if result.duplicates else "")
        )

    # -- step 1: scenarios -----------------------------------------------------------------
    async def _generate(self, round_no: int) -> list[Scenario]:
        n = self.config.generate
        if n <= 0:
            return []
        already = self.store.scenarios_of_run(self.run_id, round_no)
        if len(already) >= n:  # resuming a round whose scenarios were all written
            return already
        existing = self.store.list_scenarios(self.domain.id)
        scores = self.store.scenario_scores(self.domain.id)
        stats: dict[tuple[str, str], CellStats] = {}
        for s in existing:
            st = stats.setdefault(s.cell, CellStats())
            st.scenarios += 1
            if s.id in scores:
                prev = st.mean_score if st.mean_score is not None else scores[s.id][0]
                st.mean_score = min(prev, scores[s.id][0])
        cells = pick_cells(self.domain, stats, n, self.rng)
        self.reporter.stage(f"round {round_no}: writing scenarios", len(cells))
        made: list[Scenario] = list(already)
        for i, cell in enumerate(cells):
            difficulty = DIFFICULTIES[(round_no + i) % len(DIFFICULTIES)]
            avoid = [s.title for s in existing if s.intent == cell.intent][:8]
            try:
                scenario = await self.teacher.write_scenario(
                    cell, difficulty, avoid=avoid, seed=derive_seed(self.config.seed, "write", round_no, i)
                )
            except ModelError as exc:
                self._failure("writing a scenario", exc, round_no=round_no, intent=cell.intent)
                self.reporter.advance()
                continue
            text = scenario.fingerprint_text()
            dup_id, sim = most_similar(text, [(s.id or 0, s.fingerprint_text()) for s in existing])
            if sim >= self.config.duplicate_threshold:
                if dup_id not in {s.id for s in already}:  # on resume, a replay of one already written
                    self.ledger.event(
                        "info",
                        f"dropped near-duplicate scenario (like {dup_id}, similarity {sim:.2f})",
                        round=round_no,
                        detail={"title": scenario.title},
                    )
            else:
                self.ledger.flush()  # the teacher's call before the scenario it wrote
                scenario = self.store.add_scenario(scenario, run_id=self.run_id, round=round_no)
                existing.append(scenario)
                made.append(scenario)
            self.reporter.advance()
        return made

    def _train(self) -> list[Scenario]:
        """The training scenarios this run may use (the first ``limit`` by id, if set)."""
        train = self.store.list_scenarios(self.domain.id, split="train")
        return train[: self.config.limit] if self.config.limit is not None else train

    def _working_set(self, round_no: int, new: list[Scenario]) -> list[Scenario]:
        """The new scenarios, topped up with existing training ones: never-run first, then weakest.

        Scenarios this run already worked on in an earlier round are left out, so each round
        covers new ground; on resume, the round's own scenarios come back in the same order.
        """
        room = self.config.scenarios - len(new)
        if room <= 0:
            return new[: self.config.scenarios]
        # Selection samples (below --samples) mark the scenarios a round worked on; gate samples don't.
        selection = self.config.gate.samples
        earlier = self.store.run_scenario_ids(self.run_id, selection, before_round=round_no)
        current = self.store.run_scenario_ids(self.run_id, selection, round_no=round_no)
        scores = self.store.scenario_scores(self.domain.id)
        new_ids = {s.id for s in new}
        # Scenarios this run harvested from its own weak dialogues come first (after a resumed
        # round's own): they are where this student actually failed.
        harvested = {
            s.id
            for r in range(1, round_no)
            for s in self.store.scenarios_of_run(self.run_id, r, "harvested")
            if s.split == "train"
        }
        train = self._train()
        have = {s.id for s in train}
        train += [
            s
            for s in self.store.list_scenarios(self.domain.id, split="train")
            if s.id in harvested and s.id not in have
        ]
        pool = [s for s in train if s.id not in new_ids and s.id not in earlier]
        pool.sort(
            key=lambda s: (
                s.id not in current,
                s.id not in harvested,
                s.id in scores,
                scores.get(s.id or 0, (0.0, 0))[0],
                s.id,
            )
        )
        return new + pool[:room]

    # -- step 2: coaching ------------------------------------------------------------------
    async def _coach(self, round_no: int, scenario: Scenario, judged: list[Scored]) -> list[CandidateRow]:
        assert scenario.id is not None
        stored = self.store.candidates_for(self.run_id, round_no, scenario.id)
        if stored:  # resuming: this scenario was coached before the interruption
            return [c for c in stored if c.outcome == "proposed"]
        worst = min(judged, key=lambda x: (x.judgement.score if x.judgement else 1.0, x.dialogue.sample))
        d, j = worst.dialogue, worst.judgement
        assert j is not None
        n_student = len(d.student_turns)
        if n_student == 0:
            return []
        k = min(max(j.weakest_turn or n_student, 1), n_student)
        prefix = d.prefix_before_student_turn(k)
        steps = d.agent_turn(k)
        # With tools, the agent's turn is its calls and their results as well as its words.
        student_reply = (
            Dialogue(seed=0, turns=steps).transcript() if len(steps) > 1 else d.student_turns[k - 1].content
        )
        seed = derive_seed(self.config.seed, "coach", scenario.id, round_no)
        try:
            reference = await self.teacher.reference_reply(prefix, seed=seed, tools=self.tool_params)
            proposals = await self.teacher.propose(
                scenario,
                prefix,
                student_reply,
                reference,
                j.critique,
                max_strategies=self.config.max_strategies,
                seed=seed,
            )
        except ModelError as exc:
            self._failure(f"coaching on scenario {scenario.id}", exc, round_no=round_no, dialogue_id=d.id)
            return []

        existing = [
            (s.id or 0, f"{s.trigger} {s.guidance}")
            for s in self.store.list_strategies(self.domain.id, ["pending", "approved"])
        ]
        taken: list[str] = []
        rows: list[CandidateRow] = []
        for p in proposals:
            text = f"{p.trigger} {p.guidance}"
            row = CandidateRow(
                run_id=self.run_id,
                round=round_no,
                domain_id=self.domain.id,
                scenario_id=scenario.id,
                source_dialogue_id=d.id,
                trigger=p.trigger,
                guidance=p.guidance,
                example=p.example,
                teacher_model=self.teacher.model.name,
                evidence=GateEvidence(
                    reference_reply=reference,
                    student_reply=student_reply,
                    weakest_turn=k,
                    critique=j.critique,
                ).stored(),
            )
            sid, sim = most_similar(text, existing)
            if sim >= self.config.merge_threshold:
                row.outcome, row.strategy_id = "merged", sid
                row.reason = f"similar to strategy {sid} (similarity {sim:.2f})"
            elif any(jaccard(text, t) >= self.config.merge_threshold for t in taken):
                row.outcome, row.reason = "merged", "similar to another proposal for the same scenario"
            else:
                taken.append(text)
            rows.append(row)
        # All of a scenario's proposals are stored together, so a resumed run sees all or none;
        # after the teacher's calls that made them.
        self.ledger.flush()
        stored = self.store.add_candidates(rows)
        return [c for c in stored if c.outcome == "proposed"]

    # -- step 3: the gate ------------------------------------------------------------------
    def _gate_scenarios(self, source: Scenario) -> tuple[list[Scenario], list[Scenario]]:
        cfg = self.config.gate
        train = [s for s in self._train() if s.id != source.id]
        rng = random.Random(derive_seed(self.config.seed, "gate", source.id))
        same = [s for s in train if s.intent == source.intent]
        other = [s for s in train if s.intent != source.intent]
        rng.shuffle(same)
        rng.shuffle(other)
        return [source, *same[: cfg.variants]], other[: cfg.regression]

    async def _gate(self, round_no: int, source: Scenario, cand: CandidateRow) -> None:
        cfg = self.config.gate
        assert cand.id is not None
        strategy = StrategyText(
            id=cand.id, kind="candidate", trigger=cand.trigger, guidance=cand.guidance, example=cand.example
        )
        targets, regression = self._gate_scenarios(source)
        # Fresh samples: the ones that made the scenario look weak would bias the comparison
        # (a low draw picked it; a re-draw regresses to the mean and flatters any candidate).
        indices = range(cfg.samples, 2 * cfg.samples)
        jobs = [(s, k, s in regression) for s in [*targets, *regression] for k in indices]
        self.reporter.stage(f"round {round_no}: gate for candidate {cand.id}", len(jobs))

        async def pair(s: Scenario, k: int) -> tuple[Scored, Scored]:
            without = await self._baseline(round_no, s, k)
            with_ = await self._dialogue(round_no, s, k, [strategy], candidate_id=cand.id)
            return without, with_

        results = await self._all([self._counted(pair(s, k)) for s, k, _ in jobs])
        pairs: list[GatePair] = []
        for (s, k, is_reg), (without, with_) in zip(jobs, results, strict=True):
            if without.judgement is None or with_.judgement is None:
                continue
            pairs.append(
                GatePair(
                    scenario_id=s.id,
                    sample=k,
                    seed=with_.dialogue.seed,
                    regression=is_reg,
                    without_dialogue_id=without.dialogue.id,
                    with_dialogue_id=with_.dialogue.id,
                    without_score=without.judgement.score,
                    with_score=with_.judgement.score,
                    delta=with_.judgement.score - without.judgement.score,
                )
            )
        deltas = [p.delta for p in pairs if not p.regression]
        reg_deltas = [p.delta for p in pairs if p.regression]
        decision = decide(deltas, reg_deltas, cfg, seed=derive_seed(self.config.seed, "bootstrap", cand.id))
        p = decision.paired
        evidence = GateEvidence.from_stored(cand.evidence).model_copy(
            update={
                "samples": cfg.samples,
                "threshold": cfg.threshold,
                "confidence": cfg.confidence,
                "deltas": list(p.deltas) if p else [],
                "mean_delta": p.mean if p else None,
                "ci_low": p.ci_low if p else None,
                "ci_high": p.ci_high if p else None,
                "regression_deltas": reg_deltas,
                "regression_mean": decision.regression_mean,
                "pairs": pairs,
                "decision": decision.reason,
            }
        )
        if not decision.accepted:
            self.store.update_candidate(
                cand.id, outcome="rejected", reason=decision.reason, evidence=evidence
            )
            self.reporter.log(f"candidate {cand.id} rejected: {decision.reason}")
            return
        row = self.store.accept_candidate(
            cand.id,
            StrategyText(trigger=cand.trigger, guidance=cand.guidance, example=cand.example),
            provenance={
                "run_id": self.run_id,
                "round": round_no,
                "scenario_id": source.id,
                "dialogue_id": cand.source_dialogue_id,
                "candidate_id": cand.id,
                "teacher_model": cand.teacher_model,
                "student_model": self.student.model.name,
                "judge_model": self.judge.model.name,
            },
            evidence=evidence,
            reason=decision.reason,
        )
        self.reporter.log(f"accepted strategy {row.id}: {decision.reason}", style="success")

    # -- summary ---------------------------------------------------------------------------
    def _summary(self, start: float, status: RunStatus, reason: str | None) -> GrowSummary:
        self.ledger.flush()  # every call row is written here: the totals below read them
        st = self.store
        cands = st.list_candidates(self.run_id)
        counts = st.run_counts(self.run_id)
        totals = st.call_totals(self.run_id)
        return GrowSummary(
            run_id=self.run_id,
            status=status,
            stop_reason=reason,
            rounds_completed=self.rounds_completed,
            scenarios_generated=counts["scenarios_generated"],
            scenarios_harvested=counts["scenarios_harvested"],
            scenarios_used=counts["scenarios_used"],
            dialogues=counts["dialogues"],
            mean_score=counts["mean_baseline_score"],
            candidates=len(cands),
            accepted=sum(c.outcome == "accepted" for c in cands),
            merged=sum(c.outcome == "merged" for c in cands),
            rejected=sum(c.outcome == "rejected" for c in cands),
            failures=st.failure_count(self.run_id),
            llm_calls=totals["calls"],
            cache_hits=totals["cache_hits"],
            tokens=totals["prompt_tokens"] + totals["completion_tokens"],
            cost_usd=round(totals["cost_usd"], 6),
            unpriced_calls=totals["unpriced_calls"],
            seconds=round(time.perf_counter() - start, 1),
            accepted_ids=[
                c.strategy_id for c in cands if c.outcome == "accepted" and c.strategy_id is not None
            ],
        )


def _config_dict(config: GrowConfig, models: RoleModels) -> dict[str, Any]:
    d = asdict(config)
    d["models"] = {f.name: getattr(models, f.name).name for f in fields(models)}
    return d
