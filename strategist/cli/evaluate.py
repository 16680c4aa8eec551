"""``strategist eval``: held-out evaluation of the library against two baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import (
    ConcurrencyOption,
    DbOption,
    DomainOption,
    LimitOption,
    MaxToolStepsOption,
    MaxTurnsOption,
    ModelOption,
    print_json,
    run_loop,
)
from .views import print_eval, progress, say


def eval_command(
    db: DbOption = None,
    domain: DomainOption = None,
    split: Annotated[str, typer.Option(help="Scenarios of this split: train, dev or test.")] = "test",
    samples: Annotated[
        int, typer.Option(min=1, help="Customer seeds per scenario (the same in every condition).")
    ] = 3,
    max_turns: MaxTurnsOption = None,
    max_tool_steps: MaxToolStepsOption = None,
    limit: LimitOption = None,
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
    concurrency: ConcurrencyOption = 1,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not replay cached responses.")] = False,
    student: ModelOption = None,
    customer: ModelOption = None,
    judge: ModelOption = None,
    report: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as a JSON object.")] = False,
) -> None:
    """Evaluate the library on held-out scenarios: no strategies vs a generic checklist vs the library."""
    from ..config import load_settings, resolve_roles
    from ..core.splits import SPLITS
    from ..engine.evaluate import EvalConfig, Evaluator
    from ..errors import StrategistError
    from ..models import resolve_model
    from ..runtime.library import StrategyLibrary
    from .common import open_store, resolve_domain

    if split not in SPLITS:
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
        max_tool_steps=max_tool_steps,
        limit=limit,
        pass_threshold=pass_threshold,
        include_pending=include_pending,
        concurrency=concurrency,
        cache=not no_cache,
    )

    async def go() -> Any:
        try:
            with progress(not json_out) as rep:
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

    result = run_loop(go()).as_dict()
    if report is not None:
        from ..report import render_eval_report

        render_eval_report(result, store, report)
    if json_out:
        print_json(result)
    else:
        print_eval(result)
        if report is not None:
            say(f"report: {report}")
