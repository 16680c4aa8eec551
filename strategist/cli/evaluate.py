"""``strategist eval``: held-out evaluation of the library against two baselines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import DbOption, DomainOption, console, print_json, table
from .grow import ModelOption, RichReporter


def eval_command(
    db: DbOption = None,
    domain: DomainOption = None,
    split: Annotated[str, typer.Option(help="Scenarios of this split: train, dev or test.")] = "test",
    samples: Annotated[
        int, typer.Option(min=1, help="Customer seeds per scenario (the same in every condition).")
    ] = 3,
    max_turns: Annotated[int | None, typer.Option(min=1, help="Cap on agent turns per dialogue.")] = None,
    seed: Annotated[int, typer.Option(help="Evaluation seed.")] = 0,
    pass_threshold: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="A dialogue passes when every check passes and its score reaches this."
        ),
    ] = 0.8,
    include_pending: Annotated[
        bool,
        typer.Option(
            "--include-pending",
            help="Also use strategies not yet approved (experiments only; shown in every output).",
        ),
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Dialogues run at once.")] = 1,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not replay cached responses.")] = False,
    student: ModelOption = None,
    customer: ModelOption = None,
    judge: ModelOption = None,
    report: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as a JSON object.")] = False,
) -> None:
    """Evaluate the library on held-out scenarios: no strategies vs a generic checklist vs the library."""
    from ..config import load_settings, resolve_roles
    from ..engine.evaluate import EvalConfig, Evaluator
    from ..errors import StrategistError
    from ..models import resolve_model
    from ..runtime.library import StrategyLibrary
    from .common import open_store, resolve_domain

    if split not in ("train", "dev", "test"):
        raise typer.BadParameter(f"'{split}' is not one of train, dev, test", param_hint="--split")
    if report is not None and not report.parent.exists():
        raise StrategistError(f"{report}: folder {report.parent} does not exist")
    store = open_store(db)
    dom = resolve_domain(store, domain)
    roles = resolve_roles({"student": student, "customer": customer, "judge": judge}, load_settings())
    models = {
        r: resolve_model(roles[r].model, **roles[r].options()) for r in ("student", "customer", "judge")
    }
    library = StrategyLibrary(store, domain=dom.id, include_pending=include_pending)
    config = EvalConfig(
        split=split,
        samples=samples,
        seed=seed,
        max_turns=max_turns,
        pass_threshold=pass_threshold,
        include_pending=include_pending,
        concurrency=concurrency,
        cache=not no_cache,
    )

    async def go() -> Any:
        try:
            if json_out:
                return await Evaluator(
                    store,
                    dom,
                    student=models["student"],
                    customer=models["customer"],
                    judge=models["judge"],
                    library=library,
                    config=config,
                ).run()
            with RichReporter() as rep:
                return await Evaluator(
                    store,
                    dom,
                    student=models["student"],
                    customer=models["customer"],
                    judge=models["judge"],
                    library=library,
                    config=config,
                    reporter=rep,
                ).run()
        finally:
            for m in models.values():
                await m.aclose()

    result = asyncio.run(go()).as_dict()
    if report is not None:
        from ..report import render_eval_report

        render_eval_report(result, store, report)
    if json_out:
        print_json(result)
    else:
        print_eval(result)
        if report is not None:
            console.print(f"report: {report}")


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
    console.print(
        f"eval run {r['run_id']}: domain {r['domain']}, split {r['split']}, {len(r['scenarios'])} scenarios "
        f"x {r['samples']} samples; student {r['student_model']}, {_library(r)}; "
        f"{r['strategies_available']} strategies" + (" (pending included)" if r["include_pending"] else "")
    )
    k = r["samples"]
    table(
        "per condition",
        ["condition", "dialogues", "mean score", "check pass rate", "pass rate", f"pass^{k}"],
        [
            (
                c["condition"],
                c["dialogues"],
                _f(c["mean_score"]),
                _f(c["check_pass_rate"]),
                _f(c["pass_rate"]),
                _f(c["pass_hat_k"]),
            )
            for c in r["conditions"]
        ],
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
    console.print(
        f"{r['llm_calls']} model calls ({r['cache_hits']} from cache), {r['failures']} failures, "
        f"{r['seconds']} s"
    )
