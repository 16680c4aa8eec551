"""What the terminal shows: tables, a strategy with its evidence, run and evaluation summaries,
and progress. Stored text (a trigger, a note, a model's reply) is never read as rich markup:
``[/INST]`` in a reply is text, not a tag."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import zip_longest
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.text import Text

from ..core.text import short
from .common import console

if TYPE_CHECKING:
    from ..audit.evidence import PairView
    from ..engine.runner import ReportStyle
    from ..store import Store
    from ..store.tables import StrategyRow

__all__ = [
    "RichReporter",
    "escape",
    "policy_lines",
    "print_eval",
    "print_strategy",
    "print_summary",
    "progress",
    "say",
    "short",
    "table",
]


def say(*parts: Any, style: str = "") -> None:
    """Print plain text (never markup), optionally in one style."""
    console.print(Text(" ".join(str(p) for p in parts), style=style))


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], **options: Any) -> None:
    """A table whose title and cells are plain text."""
    from rich.table import Table

    t = Table(title=Text(title), title_justify="left", **options)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*(v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in r))
    console.print(t)


# -- a strategy, as reviewers see it -------------------------------------------------------------
def policy_lines(row: StrategyRow) -> list[str]:
    c = row.policy_check
    if not c:
        return [f"policy: not checked (run: strategist strategies check {row.id})"]
    stale = "" if c.get("version") == row.version else f" - checked version {c.get('version')}, not this one"
    who = f"(judge {c.get('model')}, {c.get('checked_at')}{stale})"
    if c.get("conflict"):
        return [f"policy: CONFLICT with: {c.get('clause')}", f"  {c.get('explanation')} {who}"]
    return [f"policy: no conflict found. {c.get('explanation')} {who}"]


def _labelled(label: str, value: str) -> Text:
    out = Text(f"{label}: ", style="bold")
    out.append(value)
    return out


def print_strategy(store: Store, row: StrategyRow, *, dialogues: int = 1, pairs_table: bool = True) -> None:
    """Text, status, policy verdict, provenance, gate evidence and before/after dialogues."""
    from ..audit.evidence import gate_line, pair_views, pairwise_text, provenance_line, source_line
    from ..core.evidence import GateEvidence
    from ..errors import NotFoundError

    head = Text(f"strategy {row.id}", style="bold")
    head.append(f" (domain {row.domain_id}) status ")
    head.append(row.status, style="bold")
    head.append(f" version {row.version}")
    console.print(head)
    conflict = bool(row.policy_check and row.policy_check.get("conflict"))
    for i, line in enumerate(policy_lines(row)):
        say(line, style="bold red" if conflict and i == 0 else "")
    console.print(_labelled("when", row.trigger))
    console.print(_labelled("do", row.guidance))
    if row.example:
        console.print(_labelled("example", row.example))
    p = row.provenance
    title = None
    if isinstance(p.get("scenario_id"), int):
        try:
            title = store.get_scenario(p["scenario_id"]).title
        except NotFoundError:
            title = None
    say("provenance: " + provenance_line(p, title))
    from ..audit.production import traffic_line

    say("production: " + traffic_line(store.strategy_outcomes([row.id or 0]).get(row.id or 0), row.version))
    e = GateEvidence.from_stored(row.evidence)
    source = source_line(e)
    if source:
        say("source: " + source)
    gate = gate_line(e)
    if gate:
        say("gate: " + gate)
        if e.decision:
            say("decision: " + e.decision)
        if e.regression_by_intent:
            per = ", ".join(f"{k} {v:+.3f}" for k, v in e.regression_by_intent.items())
            say(f"regression set: mean change per intent {per}")
        elif e.regression_mean is not None:
            say(f"regression set: mean change {e.regression_mean:+.3f}")
    if e.batches and pairs_table:
        print_batches(e)
    if e.pairs and pairs_table:
        table(
            "paired evidence",
            [
                "scenario",
                "seed",
                "batch",
                "without (dialogue)",
                "with (dialogue)",
                "delta",
                "pairwise",
                "set",
            ],
            [
                (
                    x.scenario_id,
                    x.seed,
                    x.batch or "-",
                    f"{_score(x.without_score)} ({x.without_dialogue_id})",
                    f"{_score(x.with_score)} ({x.with_dialogue_id})",
                    f"{x.delta:+.3f}" + (" (partial)" if x.partial else ""),
                    pairwise_text(x),
                    ("regression" if x.regression else "target")
                    + (f"; left out: {', '.join(x.faults)}" if x.faults else ""),
                )
                for x in e.pairs
            ],
        )
    for pv in pair_views(store, e, limit=dialogues) if dialogues > 0 else []:
        print_pair(pv)


def print_batches(e: Any) -> None:
    """The sequential gate, batch by batch: its bounds and what it concluded after each."""

    def bounds(mean: float | None, low: float | None, high: float | None) -> str:
        return "-" if mean is None else f"{mean:+.3f} [{_f(low, '{:+.3f}')}, {_f(high, '{:+.3f}')}]"

    table(
        "sequential gate",
        ["batch", "pairs", "score gain [bounds]", "pairwise [bounds]", "then"],
        [
            (
                b.batch,
                b.pairs,
                bounds(b.score_mean, b.score_low, b.score_high),
                bounds(b.pairwise_mean, b.pairwise_low, b.pairwise_high),
                b.verdict,
            )
            for b in e.batches
        ],
    )


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_pair(pv: PairView) -> None:
    """One before/after pair side by side, with the judge's critiques."""
    from rich.table import Table

    gain = "" if pv.delta is None else f", gain {pv.delta:+.3f}"
    t = Table(
        title=Text(f'before/after: scenario {pv.scenario_id} "{pv.scenario_title}", seed {pv.seed}{gain}'),
        title_justify="left",
        show_lines=True,
        expand=True,
    )
    t.add_column(Text(f"without the strategy: {pv.without.title}"), ratio=1)
    t.add_column(Text(f"with the strategy: {pv.with_.title}"), ratio=1)

    def cell(turn: tuple[str, str] | None) -> Text:
        return Text("") if turn is None else _labelled(turn[0], turn[1])

    def missing(side: Any) -> Text:
        return Text(f"(dialogue {side.dialogue_id} is not in this database)", style="dim")

    if pv.without.missing or pv.with_.missing:
        t.add_row(
            missing(pv.without) if pv.without.missing else Text(""),
            missing(pv.with_) if pv.with_.missing else Text(""),
        )
    for left, right in zip_longest(pv.without.turns, pv.with_.turns):
        t.add_row(cell(left), cell(right))
    t.add_row(
        Text("judge: " + (pv.without.critique or "-"), style="italic"),
        Text("judge: " + (pv.with_.critique or "-"), style="italic"),
    )
    console.print(t)


# -- runs ----------------------------------------------------------------------------------------
def _cost(s: dict[str, Any]) -> str:
    unknown = s.get("unpriced_calls", 0)
    text = f"{s.get('cost_usd', 0.0):.4f}"
    return text + (f" + {unknown} calls of unknown price" if unknown else "")


def _rate(part: int, whole: int) -> str:
    return f"{part} of {whole}" + (f" ({part / whole:.0%})" if whole else "")


def print_summary(s: dict[str, Any]) -> None:
    """A grow run's summary (GrowSummary.as_dict())."""
    mean = "n/a" if s["mean_score"] is None else f"{s['mean_score']:.3f}"
    rows = [
        ("rounds completed", s["rounds_completed"]),
        ("scenarios generated / used", f"{s['scenarios_generated']} / {s['scenarios_used']}"),
        *([("scenarios harvested", s["scenarios_harvested"])] if s.get("scenarios_harvested") else []),
        ("dialogues", s["dialogues"]),
        ("mean score (no strategies)", mean),
        ("candidates proposed", s["candidates"]),
        ("accepted (pending review)", s["accepted"]),
        ("merged / rejected by gate", f"{s['merged']} / {s['rejected']}"),
        ("recorded failures", s["failures"]),
        ("unjudgeable dialogues", _rate(s.get("unjudged", 0), s["dialogues"])),
        ("judged on checks + rating only", s.get("partial_judgements", 0)),
        ("simulator faults (left out of the gate)", s.get("flagged_dialogues", 0)),
        ("gate pairs judged", s.get("gate_pairs", 0)),
        ("LLM calls (cache hits)", f"{s['llm_calls']} ({s.get('cache_hits', 0)})"),
        ("tokens", s["tokens"]),
        ("cost (USD)", _cost(s)),
        ("time", f"{s['seconds']:.1f} s"),
    ]
    table(f"run {s['run_id']}: {s['status']}", ["what", "value"], rows, show_header=False)
    if s["stop_reason"]:
        say(f"stopped early: {s['stop_reason']} (everything up to here is saved)")
    if s["accepted_ids"]:
        ids = ", ".join(map(str, s["accepted_ids"]))
        say(f"new pending strategies: {ids}; see them with: strategist strategies show ID")


def _f(x: float | None, fmt: str = "{:.3f}") -> str:
    return "–" if x is None else fmt.format(x)


def _ci(p: dict[str, Any] | None) -> str:
    from ..core.stats import MIN_PAIRS_FOR_INTERVAL

    if not p:
        return "–"
    if p["n"] < MIN_PAIRS_FOR_INTERVAL:  # one pair: an "interval" would only repeat the mean
        return f"{p['mean']:+.3f} (n too small for a CI: n={p['n']})"
    return f"{p['mean']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}] (n={p['n']})"


def _library(r: dict[str, Any]) -> str:
    models = r["library_student_models"]
    if models:
        transfer = " (transfer)" if r["student_model"] not in models else ""
        return f"library grown with {', '.join(models)}{transfer}"
    if not r["strategies_available"]:
        which = "approved or pending" if r["include_pending"] else "approved"
        return f"library empty: no {which} strategies in this database"
    return "library grown with: not recorded"


def print_eval(r: dict[str, Any]) -> None:
    """An evaluation's result (EvalResult.as_dict())."""
    say(
        f"eval run {r['run_id']}: domain {r['domain']}, split {r['split']}, {len(r['scenarios'])} scenarios "
        f"x {r['samples']} samples; student {r['student_model']}, {_library(r)}; "
        f"{r['strategies_available']} strategies" + (" (pending included)" if r["include_pending"] else "")
    )
    k = r["samples"]
    conditions = r["conditions"]
    # One column per condition: the metrics stay readable on an 80-column terminal.
    metrics: list[tuple[str, str, Callable[[Any], str]]] = [
        ("dialogues", "dialogues", str),
        ("mean score", "mean_score", _f),
        ("check pass rate", "check_pass_rate", _f),
        ("action pass rate", "action_pass_rate", _f),
        ("pass rate", "pass_rate", _f),
        (f"pass^{k}", "pass_hat_k", _f),
    ]
    if all(c.get("action_pass_rate") is None for c in conditions):
        metrics = [m for m in metrics if m[1] != "action_pass_rate"]
    table(
        "per condition",
        ["", *(c["condition"] for c in conditions)],
        [(label, *(fmt(c.get(key)) for c in conditions)) for label, key, fmt in metrics],
    )
    table(
        "library against the baselines (paired, 95% bootstrap CI)",
        ["comparison", "mean difference [CI]"],
        [
            ("library - no strategies", _ci(r["library_vs_none"])),
            ("library - generic checklist", _ci(r["library_vs_generic"])),
        ],
    )
    table(
        "per scenario",
        ["id", "intent", "none", "generic", "library", "library - none [CI]"],
        [
            (
                s["scenario_id"],
                s["intent"],
                _f(s["means"]["none"]),
                _f(s["means"]["generic"]),
                _f(s["means"]["library"]),
                _ci(s["delta_none"]),
            )
            for s in r["scenarios"]
        ],
    )
    say(
        f"{r['llm_calls']} model calls ({r['cache_hits']} from cache), {r['failures']} failures, "
        f"{r['seconds']} s"
    )
    if "unjudged" in r:
        say(
            f"judging: {_rate(r['unjudged'], r.get('dialogues_run', 0))} dialogues unjudgeable, "
            f"{r.get('partial_judgements', 0)} judged on checks + rating only, "
            f"{r.get('flagged_dialogues', 0)} left out for a simulator fault"
        )


# -- progress ------------------------------------------------------------------------------------
STYLES = {"": "", "heading": "bold", "warning": "yellow", "success": "green"}


class RichReporter:
    """Progress bars on a terminal; plain lines elsewhere (CI logs, pipes, nohup)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not self.live,
        )
        self.task: Any = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def stage(self, name: str, total: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=total)
        if not self.live:
            say(f"{name} ({total})")

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def log(self, message: str, *, style: ReportStyle = "") -> None:
        self.progress.console.print(Text(message, style=STYLES[style]))


@contextmanager
def progress(enabled: bool) -> Iterator[RichReporter | None]:
    """Progress for a long command: bars on a terminal, lines elsewhere, nothing for --json."""
    if not enabled:
        yield None
        return
    with RichReporter() as reporter:
        yield reporter
