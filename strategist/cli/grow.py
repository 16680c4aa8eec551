"""``strategist grow``: grow the library on a domain, with progress bars and a summary."""

from __future__ import annotations

import enum
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
from .views import print_summary, progress, say


class GateSignalChoice(enum.StrEnum):
    score = "score"
    pairwise = "pairwise"
    both = "both"


def grow(
    db: DbOption = None,
    domain: DomainOption = None,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of scenario generation + improvement.")] = 1,
    scenarios: Annotated[int, typer.Option(min=1, help="Scenarios worked on per round.")] = 4,
    generate: Annotated[
        int | None,
        typer.Option(min=0, help="Of those, new ones the teacher writes (default: half, rounded up)."),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            min=1, help="Customer seeds per scenario, same on both sides of the gate (its first batch)."
        ),
    ] = 3,
    max_samples: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The gate adds batches of --samples fresh seeds while its decision is open, up to "
            "this many seeds per scenario (default: 8 batches).",
        ),
    ] = None,
    gate_signal: Annotated[
        GateSignalChoice,
        typer.Option(
            help="What the gate decides on: score (the judge's score of each dialogue), pairwise (the "
            "judge compares each pair side by side, in both orders) or both (each must clear).",
        ),
    ] = GateSignalChoice.score,
    min_gain: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Reject once the upper bound is below --threshold plus this (it cannot help enough).",
        ),
    ] = 0.03,
    effect: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="The gain the gate is sized to find: a candidate is dropped early once its (looser) "
            "upper bound is below --threshold plus this.",
        ),
    ] = 0.1,
    variants: Annotated[
        int, typer.Option(min=0, help="Same-intent scenarios each candidate is also tried on.")
    ] = 1,
    regression: Annotated[
        int, typer.Option(min=0, help="Other-intent scenarios it must not make worse.")
    ] = 1,
    threshold: Annotated[
        float, typer.Option(help="Accept when the lower confidence bound is above this.")
    ] = 0.0,
    weak: Annotated[float, typer.Option(min=0.0, max=1.0, help="Coach scenarios scoring below this.")] = 0.8,
    max_strategies: Annotated[
        int, typer.Option(min=1, max=3, help="Strategies proposed per weak scenario.")
    ] = 2,
    contrast_spread: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Coach a weak scenario from its best and worst run when their scores differ by at "
            "least this much.",
        ),
    ] = 0.05,
    max_turns: MaxTurnsOption = None,
    harvest: Annotated[
        int,
        typer.Option(
            min=0,
            help="Each round, turn up to N of its weakest dialogues into scenarios (the conversation up "
            "to the weakest agent turn, replayed) that the next rounds work on first.",
        ),
    ] = 0,
    harvest_below: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="With --harvest: dialogues scoring below this.")
    ] = 0.6,
    max_tool_steps: MaxToolStepsOption = None,
    limit: LimitOption = None,
    max_calls: Annotated[int | None, typer.Option(min=1, help="Stop after this many model calls.")] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Stop after this many tokens.")] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            min=0.0, help="Stop after this many US dollars (priced models only, from litellm's table)."
        ),
    ] = None,
    concurrency: ConcurrencyOption = 1,
    per_model_concurrency: Annotated[
        int | None, typer.Option(min=1, help="Calls in flight per model, across the roles sharing it.")
    ] = None,
    cache_db: Annotated[
        str | None,
        typer.Option(
            help="Keep the response cache in this database instead of the library's "
            "(share it between libraries to replay identical runs)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Run seed: same seed, same customer randomness.")] = 0,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Call the models even for requests already "
            "answered (by default identical requests replay from the cache).",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish the latest interrupted run (or --run ID) with its own settings; work already "
            "stored is skipped and finished model calls replay from the cache.",
        ),
    ] = False,
    run_id: Annotated[int | None, typer.Option("--run", help="With --resume: the run to finish.")] = None,
    teacher: ModelOption = None,
    student: ModelOption = None,
    customer: ModelOption = None,
    judge: ModelOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as a JSON object.")] = False,
) -> None:
    """Grow the strategy library: new scenarios, dialogues, coaching, and the gate."""
    from ..config import load_settings, resolve_roles
    from ..core.gate import GateConfig
    from ..engine.grow import GrowConfig, Grower, RoleModels
    from ..engine.ledger import Budget
    from ..models import resolve_model
    from ..store import Store
    from .common import open_store, resolve_domain

    store = open_store(db, create=True)
    flags = {"teacher": teacher, "student": student, "customer": customer, "judge": judge}
    if resume:
        run = _run_to_resume(store, run_id)
        dom = store.get_domain(run.domain_id)
        config = GrowConfig.from_dict(run.config)
        # The run's own models, unless a flag says otherwise; connection options still come
        # from the environment and strategist.toml.
        flags = {r: flags[r] or run.config.get("models", {}).get(r) for r in flags}
    else:
        dom = resolve_domain(store, domain, load_into_empty=True)
        config = GrowConfig(
            rounds=rounds,
            scenarios=scenarios,
            generate=(scenarios + 1) // 2 if generate is None else generate,
            seed=seed,
            cache=not no_cache,
            weak_threshold=weak,
            max_strategies=max_strategies,
            contrast_spread=contrast_spread,
            concurrency=concurrency,
            per_model_concurrency=per_model_concurrency,
            max_turns=max_turns,
            max_tool_steps=max_tool_steps,
            limit=limit,
            harvest=harvest,
            harvest_below=harvest_below,
            gate=GateConfig(
                samples=samples,
                variants=variants,
                regression=regression,
                threshold=threshold,
                max_samples=max_samples,
                signal=gate_signal.value,
                min_gain=min_gain,
                effect=effect,
            ),
            budget=Budget(max_calls=max_calls, max_tokens=max_tokens, max_cost_usd=max_cost),
        )
    roles = resolve_roles(flags, load_settings())
    # One model object per role, even when two roles share a name: each keeps its own state (KV cache).
    models = RoleModels(**{r: resolve_model(c.model, **c.options()) for r, c in roles.items()})
    if not json_out:
        say(
            f"growing domain {dom.id} in {store.engine.url.database or store.engine.url}: "
            + ", ".join(f"{r}={c.model}" for r, c in roles.items())
        )

    resume_run = run.id if resume else None
    cache_store = Store.open(cache_db) if cache_db else None
    if not json_out:
        say(_estimate(config, dom, models, store.list_scenarios(dom.id, split="train")).describe())

    async def go() -> Any:
        try:
            with progress(not json_out) as rep:
                return await Grower(
                    store, dom, models, config, rep, resume_run=resume_run, cache_store=cache_store
                ).run()
        finally:
            for m in (models.teacher, models.student, models.customer, models.judge):
                await m.aclose()

    summary = run_loop(go())
    if json_out:
        print_json(summary.as_dict())
    else:
        print_summary(summary.as_dict())
    if summary.status == "failed":
        raise typer.Exit(1)


def _estimate(config: Any, domain: Any, models: Any, train: Any) -> Any:
    from ..config import ROLES
    from ..engine.estimate import estimate

    by_role = {r: getattr(models, r) for r in ROLES}
    by_name = {m.name: m for m in by_role.values()}
    return estimate(
        config,
        domain,
        {r: m.name for r, m in by_role.items()},
        lambda name, p, c: by_name[name].price(p, c),
        scenarios=train,
    )


def _run_to_resume(store: Any, run_id: int | None) -> Any:
    from ..errors import StrategistError

    if run_id is not None:
        run = store.get_run(run_id)
    else:
        unfinished = [r for r in store.list_runs() if r.status != "completed"]
        if not unfinished:
            raise StrategistError("no interrupted run to resume")
        run = unfinished[-1]
    if run.status == "completed":
        raise StrategistError(f"run {run.id} is already completed")
    return run
