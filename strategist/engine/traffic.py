"""Judging captured conversations offline: a sample of the conversations ``serve --capture``
stored is judged against the domain's policy; each judged conversation adds to the good or poor
count of every strategy version that was in one of its prompts (evidence from production, in
the manner of ACE's helpful/harmful counters)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..core.dialogue import Dialogue
from ..core.domain import Domain, Scenario, SuccessCriteria
from ..errors import ModelError, one_line
from ..roles import Judge
from ..store import Store
from ..store.conversations import _versions_in
from .harvest import conversation_turns
from .runner import NullReporter, Reporter

#: What every captured conversation is judged on (besides the domain's own default criteria).
TRAFFIC_RUBRIC = (
    "The agent followed the company policy in everything it said and did",
    "The agent resolved the customer's request, or clearly explained why not and what happens next",
)


@dataclass
class TrafficJudgeResult:
    judged: list[tuple[int, float]] = field(default_factory=list)  # (conversation id, score)
    poor: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "judged": [{"conversation": c, "score": round(s, 4)} for c, s in self.judged],
            "poor": self.poor,
            "skipped": [{"conversation": c, "why": w} for c, w in self.skipped],
            "failures": [{"conversation": c, "error": e} for c, e in self.failures],
        }


def traffic_scenario(domain: Domain, conversation_id: int, opening: str) -> Scenario:
    """What the judge is told about a real customer: nothing but what the conversation shows."""
    return Scenario(
        domain=domain.id,
        title=f"captured conversation {conversation_id}",
        intent=domain.intents[0].id,
        goal="A real customer: what they wanted is in the conversation itself. "
        "Judge the agent by the company policy.",
        opening=opening or "(no message)",
        success=SuccessCriteria(rubric=list(TRAFFIC_RUBRIC)),
        origin="imported",
    )


async def judge_traffic(
    store: Store,
    domain: Domain,
    judge: Judge,
    *,
    sample: int | None = None,
    seed: int = 0,
    poor_below: float = 0.6,
    counts_store: Store | None = None,
    reporter: Reporter | None = None,
) -> TrafficJudgeResult:
    """Judge ``sample`` of the captured conversations not judged yet (all if None), chosen at
    random with ``seed``. Counts go to ``counts_store`` when the library is in another database."""
    reporter = reporter or NullReporter()
    rows = store.list_conversations(domain.id, "traffic", judged=False)
    if sample is not None and sample < len(rows):
        rows = sorted(random.Random(seed).sample(rows, sample), key=lambda r: r.id or 0)
    result = TrafficJudgeResult()
    reporter.stage(f"judging {len(rows)} captured conversations", len(rows))
    for row in rows:
        assert row.id is not None
        turns = conversation_turns(row.messages)
        d = Dialogue(seed=0, turns=turns)
        if not d.student_turns or not any(t.role == "customer" for t in turns):
            result.skipped.append((row.id, "no customer message answered by the agent"))
            reporter.advance()
            continue
        opening = next(t.content for t in turns if t.role == "customer")
        try:
            j = await judge.judge(traffic_scenario(domain, row.id, opening), d, seed=seed + row.id)
        except ModelError as exc:
            result.failures.append((row.id, one_line(exc)))
            reporter.log(f"failure judging conversation {row.id}: {one_line(exc)}", style="warning")
            reporter.advance()
            continue
        stored = j.model_dump(mode="json", exclude={"id", "dialogue_id"})
        counted = store.judge_conversation(
            row.id, j.score, stored, poor_below=poor_below, count=counts_store is None
        )
        if counted and counts_store is not None:
            counts_store.count_outcomes(_versions_in(row.strategies), poor=j.score < poor_below)
        result.judged.append((row.id, j.score))
        result.poor += j.score < poor_below
        reporter.advance()
    return result
