"""``strategist grow``: grow the library on a domain, with progress bars and a summary."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from .common import DbOption, DomainOption, JsonOption, console, print_json

ModelOption = Annotated[
    str | None, typer.Option(help="Model for this role (default: settings, then embedded/smollm2).")
]


class RichReporter:
    """Progress bars on a terminal; plain lines elsewhere (CI logs, pipes)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task: Any = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def stage(self, name: str, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[-1].total)
        self.task = self.progress.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def log(self, message: str) -> None:
        self.progress.console.print(message)


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
        int, typer.Option(min=1, help="Customer seeds per scenario, same on both sides of the gate.")
    ] = 3,
    variants: Annotated[
        int, typer.Option(min=0, help="Same-intent scenarios each candidate is also tried on.")
    ] = 1,
    regression: Annotated[
        int, typer.Option(min=0, help="Other-intent scenarios it must not make worse.")
    ] = 1,
    threshold: Annotated[float, typer.Option(help="Accept when the CI's lower bound is above this.")] = 0.0,
    weak: Annotated[float, typer.Option(min=0.0, max=1.0, help="Coach scenarios scoring below this.")] = 0.8,
    max_strategies: Annotated[
        int, typer.Option(min=1, max=3, help="Strategies proposed per weak scenario.")
    ] = 2,
    max_turns: Annotated[int | None, typer.Option(min=1, help="Cap on agent turns per dialogue.")] = None,
    max_calls: Annotated[int | None, typer.Option(min=1, help="Stop after this many model calls.")] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Stop after this many tokens.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Dialogues run at once.")] = 1,
    seed: Annotated[int, typer.Option(help="Run seed: same seed, same customer randomness.")] = 0,
    teacher: ModelOption = None,
    student: ModelOption = None,
    customer: ModelOption = None,
    judge: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """Grow the strategy library: new scenarios, dialogues, coaching, and the gate."""
    from ..config import load_settings, resolve_roles
    from ..core.gate import GateConfig
    from ..engine.grow import GrowConfig, Grower, RoleModels
    from ..engine.ledger import Budget
    from ..models import resolve_model
    from .common import open_store, resolve_domain

    store = open_store(db)
    dom = resolve_domain(store, domain)
    if max_turns is not None:
        dom = dom.model_copy(update={"max_turns": max_turns})
    roles = resolve_roles(
        {"teacher": teacher, "student": student, "customer": customer, "judge": judge}, load_settings()
    )
    # One model object per role, even when two roles share a name: each keeps its own state (KV cache).
    models = RoleModels(**{r: resolve_model(c.model, **c.options()) for r, c in roles.items()})
    config = GrowConfig(
        rounds=rounds,
        scenarios=scenarios,
        generate=(scenarios + 1) // 2 if generate is None else generate,
        seed=seed,
        weak_threshold=weak,
        max_strategies=max_strategies,
        concurrency=concurrency,
        gate=GateConfig(samples=samples, variants=variants, regression=regression, threshold=threshold),
        budget=Budget(max_calls=max_calls, max_tokens=max_tokens),
    )
    if not json_out:
        console.print(
            f"growing domain [bold]{dom.id}[/] in {store.engine.url.database or store.engine.url}: "
            + ", ".join(f"{r}={c.model}" for r, c in roles.items())
        )

    async def go() -> Any:
        try:
            if json_out:
                return await Grower(store, dom, models, config).run()
            with RichReporter() as rep:
                return await Grower(store, dom, models, config, rep).run()
        finally:
            for m in (models.teacher, models.student, models.customer, models.judge):
                await m.aclose()

    summary = asyncio.run(go())
    if json_out:
        print_json(summary.as_dict())
    else:
        print_summary(summary.as_dict())


def print_summary(s: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"run {s['run_id']}: {s['status']}", title_justify="left", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    mean = "n/a" if s["mean_score"] is None else f"{s['mean_score']:.3f}"
    rows = [
        ("rounds completed", s["rounds_completed"]),
        ("scenarios generated / used", f"{s['scenarios_generated']} / {s['scenarios_used']}"),
        ("dialogues", s["dialogues"]),
        ("mean score (no strategies)", mean),
        ("candidates proposed", s["candidates"]),
        ("accepted (pending review)", s["accepted"]),
        ("merged / rejected by gate", f"{s['merged']} / {s['rejected']}"),
        ("recorded failures", s["failures"]),
        ("LLM calls", s["llm_calls"]),
        ("tokens", s["tokens"]),
        ("time", f"{s['seconds']:.1f} s"),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)
    if s["stop_reason"]:
        console.print(f"stopped early: {s['stop_reason']} (everything up to here is saved)")
    if s["accepted_ids"]:
        ids = ", ".join(map(str, s["accepted_ids"]))
        console.print(f"new pending strategies: {ids}; see them with: strategist strategies show ID")
