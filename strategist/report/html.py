"""The evaluation report: one HTML file that opens offline, with matplotlib plots inlined."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ..core.stats import MIN_PAIRS_FOR_INTERVAL
from ..store import Store

TEMPLATES = Path(__file__).parent / "templates"
COLORS = {"none": "#9e9e9e", "generic": "#5c8ed6", "library": "#2e9d5b"}
# A paired difference by what it shows: the library better, worse, or no clear difference.
SIGN_COLORS = {"better": "#2e9d5b", "worse": "#c62828", "unclear": "#8a8a8a"}
SIGN_LABELS = {
    "better": "interval above 0: library better",
    "worse": "interval below 0: library worse",
    "unclear": "interval includes 0: no clear difference",
}


def has_interval(d: dict[str, Any]) -> bool:
    """Whether a paired result has an interval at all (with one pair it is only the mean)."""
    return int(d["n"]) >= MIN_PAIRS_FOR_INTERVAL


def delta_sign(d: dict[str, Any]) -> str:
    """``better``, ``worse`` or ``unclear`` for a paired result: by its interval, or by the sign of
    its mean when there are too few pairs for an interval."""
    low, high = (d["ci_low"], d["ci_high"]) if has_interval(d) else (d["mean"], d["mean"])
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "unclear"


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(
    result: dict[str, Any], growth: list[dict[str, Any]], outcomes: dict[str, list[float]]
) -> dict[str, str]:
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

    plots["deltas"] = _png(deltas_figure(result["scenarios"]))

    if growth:  # else the report says in words why there is no plot
        plots["growth"] = _png(growth_figure(growth))
    return plots


def deltas_figure(scenarios: list[dict[str, Any]]) -> Any:
    """Each scenario's paired difference (library minus no strategies) with its interval, colored
    by what it shows (SIGN_COLORS, in the legend). Too few pairs: a hollow point, no interval."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = [r for r in scenarios if r["delta_none"]]
    fig, ax = plt.subplots(figsize=(6.4, max(2.4, 0.35 * len(rows) + 1.4)))
    shown: dict[str, Line2D] = {}
    few = False
    for i, r in enumerate(rows):
        d = r["delta_none"]
        sign = delta_sign(d)
        color = SIGN_COLORS[sign]
        if has_interval(d):
            ax.errorbar(
                d["mean"],
                i,
                xerr=[[d["mean"] - d["ci_low"]], [d["ci_high"] - d["mean"]]],
                fmt="o",
                color=color,
                capsize=3,
            )
        else:
            few = True
            ax.plot(d["mean"], i, "o", markerfacecolor="white", markeredgecolor=color, color=color)
        shown.setdefault(sign, Line2D([], [], marker="o", ls="", color=color, label=SIGN_LABELS[sign]))
    ax.axvline(0, color="#444", lw=0.8)
    ax.margins(x=0.08)
    ax.set_yticks(range(len(rows)), [f"#{r['scenario_id']}" for r in rows])
    ax.set_xlabel("library minus no strategies (paired, 95% CI)")
    ax.set_title("Per-scenario paired differences")
    handles = [shown[k] for k in SIGN_COLORS if k in shown]
    if few:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                color="#444",
                markerfacecolor="white",
                label="n too small for an interval (colored by its sign)",
            )
        )
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=1, frameon=False)
    return fig


def growth_figure(growth: list[dict[str, Any]]) -> Any:
    """Strategies accepted in each grow round (bars) and the library's total after it (points):
    visible with a single round too."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    x = list(range(1, len(growth) + 1))
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    ax.bar(x, [g["accepted"] for g in growth], width=0.6, color="#b9dfc7", label="accepted in the round")
    ax.plot(x, [g["total"] for g in growth], "o-", color=COLORS["library"], label="library total")
    ax.set_xticks(x, [g["label"] for g in growth], rotation=45, ha="right")
    ax.set_xlim(0.4, len(growth) + 0.6)
    ax.set_ylim(0, max(1, max(g["total"] for g in growth)) * 1.15)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("accepted strategies")
    ax.set_title("Library growth per grow round")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def growth_note(store: Store, domain: str, growth: list[dict[str, Any]]) -> str | None:
    """Why there is no growth to show, in words; None when there is."""
    if growth:
        return None
    if store.list_strategies(domain):
        return (
            f"No grow rounds recorded for domain '{domain}' in this database: "
            "its library was imported (or added by hand), not grown here."
        )
    return f"No grow rounds recorded for domain '{domain}' in this database, and its library is empty."


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
    growth = library_growth(store, result["domain"])
    html = env.get_template("eval.html.j2").render(
        r=result,
        plots=_plots(result, growth, outcomes),
        dialogues=dialogues,
        judgements=judgements,
        growth=growth,
        growth_note=growth_note(store, result["domain"], growth),
        has_interval=has_interval,
        delta_sign=delta_sign,
        sign_colors=SIGN_COLORS,
        sign_labels=SIGN_LABELS,
    )
    path.write_text(html, encoding="utf-8")
