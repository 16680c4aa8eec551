"""Harvesting: scenarios made from conversations where the student really went wrong.

The seed paper's unit of learning is a conversation prefix where the student failed. Harvesting
turns one into a training scenario: the conversation up to the weakest agent turn is replayed as
the scenario's opening turns, and the teacher reads the rest from the conversation (goal, facts
the customer knows and the ones it reveals only when asked, and success criteria from what went
wrong). Sources: judged dialogues of a grow or eval run, imported transcripts, and conversations
captured by ``serve --capture``.

Rules that keep the splits apart: a scenario harvested from a dialogue takes its source
scenario's split (a test scenario's failures never become training material), and a harvested
scenario that is a near-duplicate of any stored scenario other than its source, in any split, is
dropped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..core.dialogue import Dialogue, Judgement, ToolCall, ToolFunction, Turn
from ..core.domain import Domain, Scenario, Split, SuccessCriteria
from ..core.runs import RunCommand
from ..core.seeds import derive_seed
from ..core.text import message_text, most_similar
from ..errors import ModelError, StrategistError, describe_validation_error, one_line
from ..models.base import ChatModel
from ..roles import Teacher
from ..store import Store
from ..store.tables import ConversationRow
from .ledger import Budget, Ledger
from .runner import NullReporter, Reporter

__all__ = [
    "HarvestConfig",
    "HarvestResult",
    "Harvester",
    "OfflineJob",
    "conversation_turns",
    "weak_dialogues",
]


@dataclass(frozen=True)
class HarvestConfig:
    below: float = 0.6  # dialogues (or conversations) scoring below this are harvested
    max: int = 5  # scenarios harvested at most, per call (per round in grow)
    duplicate_threshold: float = 0.6  # similarity to a stored scenario at which one is dropped
    seed: int = 0


@dataclass
class HarvestResult:
    added: list[Scenario] = field(default_factory=list)
    duplicates: list[tuple[str, int, float]] = field(default_factory=list)  # (source, like, similarity)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": [s.id for s in self.added],
            "duplicates": [
                {"source": s, "like": i, "similarity": round(x, 3)} for s, i, x in self.duplicates
            ],
            "skipped": [{"source": s, "why": w} for s, w in self.skipped],
            "failures": [{"source": s, "error": e} for s, e in self.failures],
        }


def conversation_turns(messages: Sequence[dict[str, Any]]) -> list[Turn]:
    """OpenAI-format messages as dialogue turns: the user is the customer, the assistant the agent
    (its tool calls kept), tool results stay tool turns; system messages are the bot's, not the
    conversation's, and are left out."""
    names: dict[str, str] = {}
    turns: list[Turn] = []
    for m in messages:
        role = m.get("role")
        content = message_text(m)
        if role == "user":
            if content.strip():  # an image or an empty message says nothing a replay could use
                turns.append(Turn(role="customer", content=content))
        elif role == "assistant":
            calls = []
            for i, c in enumerate(m.get("tool_calls") or []):
                fn = c.get("function") or {}
                call = ToolCall(
                    id=str(c.get("id") or f"call_{len(turns)}_{i}"),
                    function=ToolFunction(
                        name=str(fn.get("name") or "tool"), arguments=str(fn.get("arguments") or "{}")
                    ),
                )
                names[call.id] = call.name
                calls.append(call)
            turns.append(Turn(role="student", content=content, tool_calls=calls))
        elif role == "tool":
            call_id = str(m.get("tool_call_id") or "")
            turns.append(
                Turn(
                    role="tool",
                    content=content,
                    tool_call_id=call_id,
                    name=m.get("name") or names.get(call_id),
                )
            )
    return turns


def weak_dialogues(store: Store, run_id: int, below: float) -> list[tuple[Dialogue, Judgement, Scenario]]:
    """The judged dialogues of a run scoring below ``below``, worst first, one per scenario (its
    worst), leaving out those harvested already."""
    done = store.harvested_from("dialogue")
    worst: dict[int, tuple[Dialogue, Judgement]] = {}
    for _cand, d, j in store.run_dialogues(run_id):
        if j is None or d.error or d.id in done or j.score >= below or d.scenario_id is None:
            continue
        held = worst.get(d.scenario_id)
        if held is None or (j.score, d.id or 0) < (held[1].score, held[0].id or 0):
            worst[d.scenario_id] = (d, j)
    out = [(d, j, store.get_scenario(sid)) for sid, (d, j) in worst.items()]
    return sorted(out, key=lambda t: (t[1].score, t[0].id or 0))


class Harvester:
    """Makes harvested scenarios with a teacher (whose calls go through ``teacher.model``: wrap it
    in a run's ledger to have them recorded and cached)."""

    def __init__(
        self,
        store: Store,
        domain: Domain,
        teacher: Teacher,
        config: HarvestConfig | None = None,
        *,
        run_id: int | None = None,
        round_no: int | None = None,
        ledger: Ledger | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.store = store
        self.domain = domain
        self.teacher = teacher
        self.config = config or HarvestConfig()
        self.run_id = run_id
        self.round_no = round_no
        self.ledger = ledger
        self.reporter: Reporter = reporter or NullReporter()
        self._taken: list[Scenario] = []  # added by this harvester, for the near-duplicate check

    # -- one conversation --------------------------------------------------------------------
    async def draft(
        self,
        turns: Sequence[Turn],
        *,
        key: str,
        source: dict[str, Any],
        weak_turn: int | None = None,
        critique: str = "",
        outcome: str = "",
        of: Scenario | None = None,
        split: Split = "train",
    ) -> Scenario:
        """A harvested scenario from ``turns`` (not stored). ``of``: the scenario the conversation
        was a dialogue of (its persona, intent, checks and split carry over)."""
        d = Dialogue(seed=0, turns=[t.model_copy(update={"strategies": []}) for t in turns])
        replies = len(d.student_turns)
        if replies == 0 or not any(t.role == "customer" for t in d.turns):
            raise StrategistError("the conversation has no customer message answered by the agent")
        seed = derive_seed(self.config.seed, "harvest", key)
        draft, chosen = await self.teacher.harvest(
            d.transcript(numbered=True),
            agent_turns=replies,
            weak_turn=weak_turn,
            critique=critique,
            outcome=outcome,
            persona=dict(of.persona) if of is not None else None,
            intent=of.intent if of is not None else None,
            seed=seed,
        )
        k = min(max(int(chosen["weakest_turn"]), 1), replies)
        prefix = d.prefix_before_student_turn(k)
        first = next(i for i, t in enumerate(prefix) if t.role == "customer")
        prefix = prefix[first:]  # a greeting before the customer's first message is not replayed
        base = of.success if of is not None else SuccessCriteria()
        success = SuccessCriteria.model_validate(
            {
                **base.model_dump(),
                "must_say": [*base.model_dump()["must_say"], *draft.must_say],
                "must_not_say": [*base.model_dump()["must_not_say"], *draft.must_not_say],
                "rubric": list(dict.fromkeys([*draft.rubric, *base.rubric])),
            }
        )
        limit = of.turns_limit(self.domain) if of is not None else self.domain.max_turns
        replayed = sum(1 for t in prefix if t.is_reply)
        try:
            return self._scenario(draft, chosen, prefix, success, key, source, k, of, split, limit - replayed)
        except ValidationError as exc:
            raise describe_validation_error("the harvested scenario", exc) from None

    def _scenario(
        self,
        draft: Any,
        chosen: dict[str, Any],
        prefix: list[Turn],
        success: SuccessCriteria,
        key: str,
        source: dict[str, Any],
        k: int,
        of: Scenario | None,
        split: Split,
        turns_left: int,
    ) -> Scenario:
        return Scenario(
            domain=self.domain.id,
            key=key,
            title=draft.title,
            intent=chosen["intent"],
            persona=chosen["persona"],
            goal=draft.goal,
            known_facts=draft.known_facts,
            hidden_facts=draft.hidden_facts,
            opening=prefix[0].content,
            prefix=prefix if len(prefix) > 1 else [],
            success=success,
            difficulty="hard",
            origin="harvested",
            split=of.split if of is not None else split,
            max_turns=max(2, min(50, turns_left)),
            source={**source, "weakest_turn": k},
        )

    def duplicate_of(self, scenario: Scenario, *, besides: int | None = None) -> tuple[int | None, float]:
        """The stored (or just harvested) scenario it is a near-duplicate of, if any, and how
        similar; its own source scenario ``besides`` does not count."""
        others = [
            (s.id or 0, s.fingerprint_text())
            for s in [*self.store.list_scenarios(self.domain.id), *self._taken]
            if s.id != besides
        ]
        sid, sim = most_similar(scenario.fingerprint_text(), others)
        return (sid, sim) if sim >= self.config.duplicate_threshold else (None, sim)

    def keep(
        self, scenario: Scenario, result: HarvestResult, label: str, *, besides: int | None = None
    ) -> bool:
        """Whether to store it: False (noted in ``result``) for a near-duplicate."""
        like, sim = self.duplicate_of(scenario, besides=besides)
        if like is not None:
            result.duplicates.append((label, like, sim))
            self._event(
                "info",
                f"dropped near-duplicate harvested scenario from {label} (like {like}, similarity {sim:.2f})",
            )
            return False
        return True

    def note(self, scenario: Scenario) -> None:
        """Count ``scenario`` (not stored yet) in the near-duplicate checks that follow."""
        self._taken.append(scenario)

    def _event(self, kind: Any, message: str, **detail: Any) -> None:
        if self.ledger is not None and self.ledger.store is not None and self.ledger.run_id is not None:
            self.ledger.event(kind, message, round=self.round_no, detail=detail)

    def _failed(self, result: HarvestResult, label: str, exc: BaseException) -> None:
        result.failures.append((label, one_line(exc)))
        self._event("failure", f"harvesting {label}: {one_line(exc)}", **_structured_detail(exc))
        self.reporter.log(f"failure harvesting {label}: {one_line(exc)}", style="warning")

    def _store(self, scenario: Scenario, conversation_id: int | None = None) -> Scenario:
        if self.ledger is not None:
            self.ledger.flush()  # the teacher's calls before the scenario they made
        stored = self.store.add_harvested(
            scenario, conversation_id=conversation_id, run_id=self.run_id, round=self.round_no
        )
        self._taken.append(stored)
        return stored

    # -- sources ----------------------------------------------------------------------------
    async def from_dialogues(self, weak: Sequence[tuple[Dialogue, Judgement, Scenario]]) -> HarvestResult:
        """Harvest up to ``max`` of these judged dialogues (worst first)."""
        result = HarvestResult()
        for d, j, of in weak:
            if len(result.added) >= self.config.max:
                break
            label = f"dialogue {d.id}"
            try:
                scenario = await self.draft(
                    d.turns,
                    key=f"harvest:dialogue:{d.id}",
                    source={"kind": "dialogue", "id": d.id, "scenario_id": of.id, "score": round(j.score, 4)},
                    weak_turn=j.weakest_turn or len(d.student_turns),
                    critique=j.critique,
                    of=of,
                )
            except (ModelError, StrategistError) as exc:
                if isinstance(exc, ModelError):
                    self._failed(result, label, exc)
                else:
                    result.skipped.append((label, one_line(exc)))
                continue
            if self.keep(scenario, result, label, besides=of.id):
                result.added.append(self._store(scenario))
                self.reporter.log(f"harvested scenario {result.added[-1].id} from {label}", style="success")
        return result

    async def from_conversations(self, rows: Sequence[ConversationRow]) -> HarvestResult:
        """Harvest judged captured (or imported) conversations, linking each to its scenario."""
        result = HarvestResult()
        for row in rows:
            if len(result.added) >= self.config.max:
                break
            label = f"conversation {row.id}"
            j = row.judgement or {}
            try:
                scenario = await self.draft(
                    conversation_turns(row.messages),
                    key=f"harvest:{row.source}:{row.id}",
                    source={"kind": row.source, "id": row.id, "score": row.score},
                    weak_turn=j.get("weakest_turn"),
                    critique=str(j.get("critique") or ""),
                    outcome=_outcome(row.meta),
                )
            except (ModelError, StrategistError) as exc:
                if isinstance(exc, ModelError):
                    self._failed(result, label, exc)
                else:
                    result.skipped.append((label, one_line(exc)))
                continue
            if self.keep(scenario, result, label):
                result.added.append(self._store(scenario, conversation_id=row.id))
        return result


def _outcome(meta: dict[str, Any]) -> str:
    parts = []
    if meta.get("outcome"):
        parts.append(f"outcome: {meta['outcome']}")
    if meta.get("csat") is not None:
        parts.append(f"customer satisfaction {meta['csat']}")
    if meta.get("tags"):
        parts.append("tags: " + ", ".join(map(str, meta["tags"])))
    return "; ".join(parts)


def _structured_detail(exc: BaseException) -> dict[str, Any]:
    return {a: getattr(exc, a) for a in ("attempts", "last_output", "last_error") if hasattr(exc, a)}


class OfflineJob:
    """A run for work done outside grow and eval (harvesting, importing transcripts, judging
    traffic): its model calls go into the ledger and the response cache like a grow's."""

    def __init__(
        self, store: Store, domain: Domain, command: RunCommand, config: dict[str, Any], *, cache: bool = True
    ) -> None:
        from .cache import ResponseCache
        from .ledger import RUN_WRITE_BATCH

        self.store = store
        self.run_id = store.start_run(domain.id, command, config)
        self.ledger = Ledger(
            store,
            self.run_id,
            Budget(),
            cache=ResponseCache(store) if cache else None,
            write_batch=RUN_WRITE_BATCH,
        )
        self._start = time.perf_counter()

    def wrap(self, model: ChatModel, role: str) -> ChatModel:
        return self.ledger.wrap(model, role)

    def finish(self, summary: dict[str, Any], *, failed: str | None = None) -> dict[str, Any]:
        self.ledger.flush()
        totals = self.store.call_totals(self.run_id)
        full = {
            **summary,
            "run_id": self.run_id,
            "llm_calls": totals["calls"],
            "cache_hits": totals["cache_hits"],
            "tokens": totals["prompt_tokens"] + totals["completion_tokens"],
            "seconds": round(time.perf_counter() - self._start, 1),
        }
        self.store.finish_run(self.run_id, "failed" if failed else "completed", full, stop_reason=failed)
        return full
