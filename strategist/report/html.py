"""The evaluation report: one HTML file that opens offline, with matplotlib plots inlined."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ..store import Store

TEMPLATES = Path(__file__).parent / "templates"
COLORS = {"none": "#9e9e9e", "generic": "#5c8ed6", "library": "#2e9d5b"}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(result: dict[str, Any], store: Store, outcomes: dict[str, list[float]]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here or on servers
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    names = [c for c in ("none", "generic", "library") if outcomes.get(c)]
    if names:
        parts = ax.boxplot([outcomes[c] for c in names], tick_labels=names, patch_artist=True, widths=0.5)
        for patch, name in zip(parts["boxes"], names, strict=True):
            patch.set_facecolor(COLORS[name])
    ax.set_ylabel("judge score")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Score distribution per condition")
    plots["scores"] = _png(fig)

    rows = [r for r in result["scenarios"] if r["delta_none"]]
    fig, ax = plt.subplots(figsize=(6.4, max(2.0, 0.35 * len(rows) + 1)))
    for i, r in enumerate(rows):
        d = r["delta_none"]
        ax.errorbar(
            d["mean"],
            i,
            xerr=[[d["mean"] - d["ci_low"]], [d["ci_high"] - d["mean"]]],
            fmt="o",
            color=COLORS["library"],
            capsize=3,
        )
    ax.axvline(0, color="#444", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"#{r['scenario_id']}" for r in rows])
    ax.set_xlabel("library minus no strategies (paired, 95% CI)")
    ax.set_title("Per-scenario paired differences")
    plots["deltas"] = _png(fig)

    growth = library_growth(store, result["domain"])
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    if growth:
        ax.step(range(1, len(growth) + 1), [g["total"] for g in growth], where="mid", color=COLORS["library"])
        ax.set_xticks(range(1, len(growth) + 1), [g["label"] for g in growth], rotation=45, ha="right")
    ax.set_ylabel("accepted strategies")
    ax.set_title("Library growth per grow round")
    plots["growth"] = _png(fig)
    return plots


def library_growth(store: Store, domain: str) -> list[dict[str, Any]]:
    """Cumulative accepted strategies after each (run, round) of the domain's grow history."""
    counts: dict[tuple[int, int], int] = {}
    for c in store.list_candidates():
        if c.domain_id == domain and c.run_id is not None:
            key = (c.run_id, c.round or 0)
            counts[key] = counts.get(key, 0) + (c.outcome == "accepted")
    total, out = 0, []
    for (run, rnd), n in sorted(counts.items()):
        total += n
        out.append({"label": f"run {run} r{rnd}", "accepted": n, "total": total})
    return out


def render_eval_report(result: dict[str, Any], store: Store, path: Path) -> None:
    """Write the report for ``result`` (EvalResult.as_dict()) to ``path``."""
    dialogue_ids = sorted({i for r in result["scenarios"] for ids in r["dialogues"].values() for i in ids})
    dialogues = {i: store.get_dialogue(i) for i in dialogue_ids}
    judgements = {i: store.judgement_for(i) for i in dialogue_ids}
    outcomes: dict[str, list[float]] = {}
    for r in result["scenarios"]:
        for cond, ids in r["dialogues"].items():
            outcomes.setdefault(cond, []).extend(j.score for i in ids if (j := judgements.get(i)) is not None)
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("eval.html.j2").render(
        r=result,
        plots=_plots(result, store, outcomes),
        dialogues=dialogues,
        judgements=judgements,
        growth=library_growth(store, result["domain"]),
    )
    path.write_text(html, encoding="utf-8")
