"""The gate's evidence, gathered for a reviewer: each paired comparison with the dialogue without
the strategy and the one with it, their scores and the judge's critiques."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.dialogue import Turn
from ..core.evidence import GateEvidence, GatePair
from ..errors import NotFoundError

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class Side:
    """One dialogue of a pair, ready to show: who said what, the score and the judge's critique."""

    dialogue_id: int | None
    score: float | None
    turns: list[tuple[str, str]] = field(default_factory=list)  # (speaker, words)
    critique: str = ""
    missing: bool = False  # the dialogue is not in this database (e.g. an imported library)

    @property
    def title(self) -> str:
        score = "-" if self.score is None else f"{self.score:.3f}"
        return f"dialogue {self.dialogue_id}, score {score}"


@dataclass
class PairView:
    scenario_id: int | None
    scenario_title: str
    seed: int | None
    delta: float | None
    regression: bool
    without: Side
    with_: Side


def _side(store: Store, dialogue_id: int | None, score: float | None) -> Side:
    if dialogue_id is None:
        return Side(None, score, missing=True)
    try:
        d = store.get_dialogue(dialogue_id)
    except NotFoundError:
        return Side(dialogue_id, score, missing=True)
    j = store.judgement_for(dialogue_id)
    return Side(dialogue_id, j.score if j else score, shown_turns(d.turns), j.critique if j else "")


def shown_turns(turns: list[Turn], *, result_chars: int = 300) -> list[tuple[str, str]]:
    """(speaker, words) for a reviewer: what was said, and the agent's tool calls and their results."""
    out: list[tuple[str, str]] = []
    for t in turns:
        if t.role == "customer":
            out.append(("Customer", t.content))
        elif t.role == "tool":
            label = f"{t.name or 'tool'} {'error' if t.error else 'result'}"
            text = " ".join(t.content.split())
            out.append((label, text if len(text) <= result_chars else text[: result_chars - 1] + "…"))
        else:
            if t.content.strip() or not t.tool_calls:
                out.append(("Agent", t.content))
            out += [("Agent calls", f"{c.name}({c.function.arguments})") for c in t.tool_calls]
            if t.tool_limit:
                out.append(("note", "the agent used all its tool steps for this turn"))
    return out


def pair_views(
    store: Store, evidence: GateEvidence, *, limit: int | None = None, regression: bool = False
) -> list[PairView]:
    """The first ``limit`` pairs of the gate (target scenarios; regression ones too if asked)."""
    pairs = evidence.pairs if regression else evidence.target_pairs
    if limit is not None:
        pairs = pairs[:limit]
    titles: dict[int, str] = {}
    out = []
    for p in pairs:
        sid = p.scenario_id
        if sid is not None and sid not in titles:
            try:
                titles[sid] = store.get_scenario(sid).title
            except NotFoundError:
                titles[sid] = "(not in this database)"
        out.append(
            PairView(
                scenario_id=sid,
                scenario_title=titles.get(sid, "") if sid is not None else "",
                seed=p.seed,
                delta=p.delta,
                regression=p.regression,
                without=_side(store, p.without_dialogue_id, p.without_score),
                with_=_side(store, p.with_dialogue_id, p.with_score),
            )
        )
    return out


def gate_line(e: GateEvidence) -> str | None:
    """One sentence about the gate's decision, or None when there is no evidence."""
    if e.mean_delta is None and e.pairwise_mean is None:
        return None
    parts = []
    if e.mean_delta is not None:
        ci = ""
        if e.ci_low is not None and e.ci_high is not None:
            level = f"{e.confidence or 0.95:.0%}"
            kind = f"{level} anytime bounds" if e.batches else f"{level} CI"
            ci = f", {kind} [{e.ci_low:+.3f}, {e.ci_high:+.3f}]"
        parts.append(f"mean paired gain {e.mean_delta:+.3f}{ci}")
    if e.pairwise_mean is not None:
        bounds = ""
        if e.pairwise_low is not None and e.pairwise_high is not None:
            bounds = f" [{e.pairwise_low:+.3f}, {e.pairwise_high:+.3f}]"
        parts.append(f"pairwise preference {e.pairwise_mean:+.3f}{bounds}")
    samples = "?" if e.samples is None else e.samples
    if e.batches:
        most = "?" if e.max_samples is None else e.max_samples
        how = (
            f"{len(e.batches)} batch{'es' if len(e.batches) > 1 else ''} of {samples} seeds "
            f"(at most {most} per scenario), signal {e.signal}"
        )
    else:
        how = f"{samples} samples per scenario"
    out = "; ".join(parts) + f" over {e.n_pairs} pairs ({how})"
    left = [f"{e.flagged_pairs} left out for a simulator fault"] if e.flagged_pairs else []
    left += [f"{e.unjudged_pairs} not judgeable"] if e.unjudged_pairs else []
    return out + (f"; {', '.join(left)}" if left else "")


SOURCE_TEXT = {
    "weakest_turn": "the teacher's reply at the student's weakest turn",
    "best_vs_worst": "the student's best run against its worst on the same scenario",
    "best_run": "the student's best run, quoted (the teacher's answer was unusable)",
    "teacher_reply": "the teacher's reply at the student's weakest turn, quoted (its advice was unusable)",
}


def source_line(e: GateEvidence) -> str | None:
    """Where the candidate came from, or None when it is not recorded."""
    if e.source is None:
        return None
    runs = ""
    if e.best_dialogue_id is not None:
        runs = f" (best dialogue {e.best_dialogue_id}, worst dialogue {e.worst_dialogue_id})"
    return SOURCE_TEXT[e.source] + runs


def pairwise_text(p: GatePair) -> str:
    """Both orders of a pair's pairwise verdict, short: ``with, tie -> +0.000``."""
    if not p.pairwise:
        return "-"
    winners = ", ".join(v.winner for v in p.pairwise)
    return winners + ("" if p.preference is None else f" -> {p.preference:+.3f}")


def gain_text(e: GateEvidence) -> str:
    """The mean paired gain with its interval, short, for lists: ``+0.125 [+0.050, +0.200]``."""
    if e.mean_delta is None or e.ci_low is None or e.ci_high is None:
        return "-"
    return f"{e.mean_delta:+.3f} [{e.ci_low:+.3f}, {e.ci_high:+.3f}]"


def provenance_line(p: dict[str, Any], scenario_title: str | None = None) -> str:
    scen = f"scenario {p.get('scenario_id')}" + (f' "{scenario_title}"' if scenario_title else "")
    return (
        f"run {p.get('run_id')}, round {p.get('round')}, {scen}, dialogue {p.get('dialogue_id')}, "
        f"teacher {p.get('teacher_model')}"
    )
