"""The gate's evidence, gathered for a reviewer: each paired comparison with the dialogue without
the strategy and the one with it, their scores and the judge's critiques."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


def _side(store: Store, dialogue_id: Any, score: Any) -> Side:
    if not isinstance(dialogue_id, int):
        return Side(None, score, missing=True)
    try:
        d = store.get_dialogue(dialogue_id)
    except NotFoundError:
        return Side(dialogue_id, score, missing=True)
    j = store.judgement_for(dialogue_id)
    turns = [("Customer" if t.role == "customer" else "Agent", t.content) for t in d.turns]
    return Side(dialogue_id, j.score if j else score, turns, j.critique if j else "")


def pair_views(
    store: Store, evidence: dict[str, Any], *, limit: int | None = None, regression: bool = False
) -> list[PairView]:
    """The first ``limit`` pairs of the gate (target scenarios; regression ones too if asked)."""
    pairs = [p for p in evidence.get("pairs") or [] if isinstance(p, dict)]
    if not regression:
        pairs = [p for p in pairs if not p.get("regression")]
    if limit is not None:
        pairs = pairs[:limit]
    titles: dict[int, str] = {}
    out = []
    for p in pairs:
        sid = p.get("scenario_id")
        if isinstance(sid, int) and sid not in titles:
            try:
                titles[sid] = store.get_scenario(sid).title
            except NotFoundError:
                titles[sid] = "(not in this database)"
        out.append(
            PairView(
                scenario_id=sid,
                scenario_title=titles.get(sid, "") if isinstance(sid, int) else "",
                seed=p.get("seed"),
                delta=p.get("delta"),
                regression=bool(p.get("regression")),
                without=_side(store, p.get("without_dialogue_id"), p.get("without_score")),
                with_=_side(store, p.get("with_dialogue_id"), p.get("with_score")),
            )
        )
    return out


def gate_line(evidence: dict[str, Any]) -> str | None:
    """One sentence about the gate's decision, or None when there is no evidence."""
    e = evidence
    if e.get("mean_delta") is None:
        return None
    # Target pairs only: the deltas the interval was computed from (regression pairs are apart).
    n = len(e.get("deltas") or []) or (e["pairs"] if isinstance(e.get("pairs"), int) else 0)
    ci = ""
    if e.get("ci_low") is not None and e.get("ci_high") is not None:
        ci = f", {e.get('confidence') or 0.95:.0%} CI [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]"
    return (
        f"mean paired gain {e['mean_delta']:+.3f}{ci} over {n} pairs "
        f"({e.get('samples', '?')} samples per scenario)"
    )


def provenance_line(p: dict[str, Any], scenario_title: str | None = None) -> str:
    scen = f"scenario {p.get('scenario_id')}" + (f' "{scenario_title}"' if scenario_title else "")
    return (
        f"run {p.get('run_id')}, round {p.get('round')}, {scen}, dialogue {p.get('dialogue_id')}, "
        f"teacher {p.get('teacher_model')}"
    )
