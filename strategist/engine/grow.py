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
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, TypeVar

from ..core.cells import CellStats, pick_cells
from ..core.dialogue import Dialogue, StrategyText
from ..core.domain import Difficulty, Domain, Scenario
from ..core.evidence import CandidateSource, GateBatch, GateEvidence, GatePair, PairwiseVote, pair_preference
from ..core.gate import MIN_SD, GateConfig, decide_look
from ..core.runs import RunStatus
from ..core.seeds import derive_seed
from ..core.stats import sequential_look
from ..core.text import jaccard, most_similar, short_quote
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
    # A weak scenario whose samples' scores spread at least this much is coached from the contrast
    # of its best and worst run (the best one shows what the student can already do).
    contrast_spread: float = 0.05
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
    # How well the dialogues could be judged (see Store.judging_counts).
    unjudged: int = 0
    partial_judgements: int = 0
    flagged_dialogues: int = 0
    gate_pairs: int = 0  # judged pairs the gate used, over every candidate
    scenarios_harvested: int = 0

    @property
    def unjudged_rate(self) -> float | None:
        judged_or_not = self.dialogues
        return self.unjudged / judged_or_not if judged_or_not else None

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
        # Each candidate's share of the run's error budget: at most this many can be gated.
        self.gate_config = replace(
            config.gate, family=config.gate.family or config.rounds * config.scenarios * config.max_strategies
        )
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

        def score(x: Scored) -> float:
            return x.judgement.score if x.judgement else 1.0

        ranked = sorted(judged, key=lambda x: (score(x), x.dialogue.sample))
        worst, best = ranked[0], ranked[-1]
        d, j = worst.dialogue, worst.judgement
        assert j is not None
        n_student = len(d.student_turns)
        if n_student == 0:
            return []
        k = min(max(j.weakest_turn or n_student, 1), n_student)
        seed = derive_seed(self.config.seed, "coach", scenario.id, round_no)
        rows: list[CandidateRow] = []
        room = self.config.max_strategies
        if (
            len(ranked) > 1
            and score(best) - score(worst) >= self.config.contrast_spread
            and best.dialogue.student_turns
        ):
            rows += await self._contrast(round_no, scenario, best, worst, k, seed)
            room -= len(rows)
        if room > 0:
            rows += await self._weakest_turn(round_no, scenario, worst, k, seed, room)

        existing = [
            (s.id or 0, f"{s.trigger} {s.guidance}")
            for s in self.store.list_strategies(self.domain.id, ["pending", "approved"])
        ]
        taken: list[str] = []
        for row in rows:
            text = f"{row.trigger} {row.guidance}"
            sid, sim = most_similar(text, existing)
            if sim >= self.config.merge_threshold:
                row.outcome, row.strategy_id = "merged", sid
                row.reason = f"similar to strategy {sid} (similarity {sim:.2f})"
            elif any(jaccard(text, t) >= self.config.merge_threshold for t in taken):
                row.outcome, row.reason = "merged", "similar to another proposal for the same scenario"
            else:
                taken.append(text)
        if not rows:
            return []
        # All of a scenario's proposals are stored together, so a resumed run sees all or none;
        # after the teacher's calls that made them.
        self.ledger.flush()
        stored = self.store.add_candidates(rows)
        return [c for c in stored if c.outcome == "proposed"]

    def _candidate(
        self,
        round_no: int,
        scenario: Scenario,
        source_dialogue: int | None,
        trigger: str,
        guidance: str,
        example: str,
        evidence: GateEvidence,
    ) -> CandidateRow:
        assert scenario.id is not None
        return CandidateRow(
            run_id=self.run_id,
            round=round_no,
            domain_id=self.domain.id,
            scenario_id=scenario.id,
            source_dialogue_id=source_dialogue,
            trigger=trigger,
            guidance=guidance,
            example=example,
            teacher_model=self.teacher.model.name,
            evidence=evidence.stored(),
        )

    async def _contrast(
        self, round_no: int, scenario: Scenario, best: Scored, worst: Scored, k: int, seed: int
    ) -> list[CandidateRow]:
        """Candidates from the student's own best run against its worst: the teacher says what the
        best run did that the worst did not; the example quotes the best run's reply."""
        bj, wj = best.judgement, worst.judgement
        assert bj is not None and wj is not None
        replies = best.dialogue.student_turns
        quote = short_quote(replies[min(k, len(replies)) - 1].content)
        evidence = GateEvidence(
            source="best_vs_worst",
            best_dialogue_id=best.dialogue.id,
            worst_dialogue_id=worst.dialogue.id,
            student_reply=short_quote(worst.dialogue.student_turns[k - 1].content, 600),
            reference_reply=quote,
            weakest_turn=k,
            critique=wj.critique,
        )
        try:
            proposals = await self.teacher.contrast(
                scenario,
                best.dialogue,
                worst.dialogue,
                best_score=bj.score,
                worst_score=wj.score,
                best_critique=bj.critique,
                worst_critique=wj.critique,
                max_strategies=self.config.max_strategies,
                seed=seed,
            )
        except ModelError as exc:
            self._failure(f"coaching on scenario {scenario.id} from its best run", exc, round_no=round_no)
            # The best run itself is still advice the student can follow: it wrote it.
            return self._quoted(
                round_no,
                scenario,
                best.dialogue.id,
                quote,
                evidence,
                "best_run",
                "in this situation it served the customer better than other replies did.",
            )
        return [
            self._candidate(round_no, scenario, best.dialogue.id, p.trigger, p.guidance, quote, evidence)
            for p in proposals
        ]

    def _quoted(
        self,
        round_no: int,
        scenario: Scenario,
        source_dialogue: int | None,
        quote: str,
        evidence: GateEvidence,
        source: CandidateSource,
        why: str,
    ) -> list[CandidateRow]:
        """The candidate when the teacher's advice is unusable: a reply quoted as the example, under
        a trigger made from the scenario's intent (the gate then tests the reply itself)."""
        intent = self.domain.intent(scenario.intent).description.strip().rstrip(".")
        trigger = f"When a customer {intent[:1].lower()}{intent[1:]}"
        guidance = f"Answer as in the example: {why}"
        ev = evidence.model_copy(update={"source": source})
        return [self._candidate(round_no, scenario, source_dialogue, trigger, guidance, quote, ev)]

    async def _weakest_turn(
        self, round_no: int, scenario: Scenario, worst: Scored, k: int, seed: int, room: int
    ) -> list[CandidateRow]:
        """Candidates from the teacher's own reply at the student's weakest turn."""
        d, j = worst.dialogue, worst.judgement
        assert j is not None
        prefix = d.prefix_before_student_turn(k)
        steps = d.agent_turn(k)
        # With tools, the agent's turn is its calls and their results as well as its words.
        student_reply = (
            Dialogue(seed=0, turns=steps).transcript() if len(steps) > 1 else d.student_turns[k - 1].content
        )
        try:
            reference = await self.teacher.reference_reply(prefix, seed=seed, tools=self.tool_params)
        except ModelError as exc:
            self._failure(f"coaching on scenario {scenario.id}", exc, round_no=round_no, dialogue_id=d.id)
            return []
        evidence = GateEvidence(
            source="weakest_turn",
            reference_reply=reference,
            student_reply=student_reply,
            weakest_turn=k,
            critique=j.critique,
        )
        try:
            proposals = await self.teacher.propose(
                scenario, prefix, student_reply, reference, j.critique, max_strategies=room, seed=seed
            )
        except ModelError as exc:
            self._failure(f"coaching on scenario {scenario.id}", exc, round_no=round_no, dialogue_id=d.id)
            # The teacher's reply is still advice the gate can test, as the best run is above.
            quote = short_quote(reference)
            if not quote.strip():
                return []
            return self._quoted(
                round_no,
                scenario,
                d.id,
                quote,
                evidence,
                "teacher_reply",
                "a stronger reply than the one given in this situation.",
            )
        return [
            self._candidate(round_no, scenario, d.id, p.trigger, p.guidance, p.example, evidence)
            for p in proposals[:room]
        ]

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
        """The sequential gate: batches of fresh seeds, each run with and without the candidate,
        until the evidence decides (or the cap is reached)."""
        cfg = self.gate_config
        assert cand.id is not None
        strategy = StrategyText(
            id=cand.id, kind="candidate", trigger=cand.trigger, guidance=cand.guidance, example=cand.example
        )
        targets, regression = self._gate_scenarios(source)
        pairwise = "pairwise" in cfg.signals()

        async def pair(s: Scenario, k: int, is_reg: bool) -> tuple[Scored, Scored, list[PairwiseVote]]:
            without = await self._baseline(round_no, s, k)
            with_ = await self._dialogue(round_no, s, k, [strategy], candidate_id=cand.id)
            votes: list[PairwiseVote] = []
            wj, jj = without.judgement, with_.judgement
            if pairwise and not is_reg and wj and jj and not (wj.faults or jj.faults):
                try:
                    votes = await self.judge.compare(
                        s, without.dialogue, with_.dialogue, seed=with_.dialogue.seed
                    )
                except ModelError as exc:
                    self._failure(
                        f"comparing dialogues {without.dialogue.id} and {with_.dialogue.id}",
                        exc,
                        kind="judge_failure",
                        round_no=round_no,
                    )
            return without, with_, votes

        pairs: list[GatePair] = []
        batches: list[GateBatch] = []
        unjudged = 0
        previous = 0.0
        most = cfg.cap * len(targets)  # the most target pairs the gate may gather
        decision = None
        for b in range(cfg.batches):
            # Fresh samples: the ones that made the scenario look weak would bias the comparison
            # (a low draw picked it; a re-draw regresses to the mean and flatters any candidate).
            start = cfg.samples * (b + 1)
            indices = range(start, min(start + cfg.samples, cfg.samples + cfg.cap))
            jobs = [(s, k, s in regression) for s in [*targets, *regression] for k in indices]
            self.reporter.stage(f"round {round_no}: gate for candidate {cand.id}, batch {b + 1}", len(jobs))
            results = await self._all([self._counted(pair(s, k, r)) for s, k, r in jobs])
            for (s, k, is_reg), (without, with_, votes) in zip(jobs, results, strict=True):
                wj, jj = without.judgement, with_.judgement
                if wj is None or jj is None:
                    unjudged += 1
                    continue
                partial = wj.partial or jj.partial
                ws, js = (
                    (wj.score_on(rubric=False), jj.score_on(rubric=False))
                    if partial
                    else (wj.score, jj.score)
                )
                pairs.append(
                    GatePair(
                        scenario_id=s.id,
                        sample=k,
                        seed=with_.dialogue.seed,
                        regression=is_reg,
                        without_dialogue_id=without.dialogue.id,
                        with_dialogue_id=with_.dialogue.id,
                        without_score=ws,
                        with_score=js,
                        delta=js - ws,
                        intent=s.intent,
                        batch=b + 1,
                        partial=partial,
                        pairwise=votes,
                        preference=pair_preference(votes),
                        faults=sorted(set(wj.faults) | set(jj.faults)),
                    )
                )
            counted = [p for p in pairs if p.counted and not p.regression]
            values = {"score": [p.delta for p in counted]}
            if pairwise:
                values["pairwise"] = [p.preference for p in counted if p.preference is not None]
            reg: dict[str, list[float]] = {}
            for p in pairs:
                if p.regression and p.counted:
                    reg.setdefault(p.intent or "?", []).append(p.delta)
            final = b == cfg.batches - 1
            fraction = min(1.0, len(counted) / most) if most else 1.0
            decision = decide_look(
                values, reg, cfg, fraction=fraction, previous_fraction=previous, final=final
            )
            score_look, pair_look = decision.looks.get("score"), decision.looks.get("pairwise")
            if score_look is None and len(values["score"]) >= 2:
                score_look = sequential_look(
                    values["score"],
                    alpha=cfg.alpha,
                    fraction=1.0 if final else fraction,
                    previous_fraction=previous,
                    min_sd=MIN_SD["score"],
                )
            batches.append(
                GateBatch(
                    batch=b + 1,
                    pairs=len(counted),
                    verdict=decision.verdict,
                    score_mean=score_look.mean if score_look else None,
                    score_low=score_look.low if score_look else None,
                    score_high=score_look.high if score_look else None,
                    pairwise_mean=pair_look.mean if pair_look else None,
                    pairwise_low=pair_look.low if pair_look else None,
                    pairwise_high=pair_look.high if pair_look else None,
                    level=next((x.level for x in (score_look, pair_look) if x is not None), None),
                )
            )
            previous = fraction
            if decision.verdict != "continue":
                break
        assert decision is not None
        last = batches[-1]
        counted = [p for p in pairs if p.counted and not p.regression]
        reg_deltas = [p.delta for p in pairs if p.regression and p.counted]
        evidence = GateEvidence.from_stored(cand.evidence).model_copy(
            update={
                "signal": cfg.signal,
                "samples": cfg.samples,
                "max_samples": cfg.cap,
                "alpha": cfg.alpha,
                "min_gain": cfg.min_gain,
                "effect": cfg.effect,
                "futility_beta": cfg.futility_beta,
                "threshold": cfg.threshold,
                "confidence": cfg.confidence,
                "deltas": [p.delta for p in counted],
                "mean_delta": last.score_mean
                if last.score_mean is not None
                else (sum(p.delta for p in counted) / len(counted) if counted else None),
                "ci_low": last.score_low,
                "ci_high": last.score_high,
                "pairwise_mean": last.pairwise_mean,
                "pairwise_low": last.pairwise_low,
                "pairwise_high": last.pairwise_high,
                "regression_deltas": reg_deltas,
                "regression_mean": sum(reg_deltas) / len(reg_deltas) if reg_deltas else None,
                "regression_by_intent": decision.regression_by_intent,
                "batches": batches,
                "pairs": pairs,
                "flagged_pairs": sum(1 for p in pairs if p.faults),
                "unjudged_pairs": unjudged,
                "decision": decision.reason,
            }
        )
        if decision.verdict != "accept":
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
                "source": evidence.source,
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
        judging = st.judging_counts(self.run_id)
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
            unjudged=judging["unjudged"],
            partial_judgements=judging["partial"],
            flagged_dialogues=judging["flagged"],
            gate_pairs=sum(len(GateEvidence.from_stored(c.evidence).pairs) for c in cands),
        )


def _config_dict(config: GrowConfig, models: RoleModels) -> dict[str, Any]:
    d = asdict(config)
    d["models"] = {f.name: getattr(models, f.name).name for f in fields(models)}
    return d
