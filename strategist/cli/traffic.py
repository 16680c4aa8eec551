"""``strategist traffic``: the conversations ``serve --capture`` stored: list, show, judge, harvest."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import (
    DbOption,
    DomainOption,
    JsonOption,
    ModelOption,
    new_app,
    open_store,
    print_json,
    resolve_domain,
    role_model,
    run_loop,
)
from .views import say, short, table

app = new_app("Captured traffic (serve --capture): list, show, judge, harvest.")


def _row_dict(r: Any) -> dict[str, Any]:
    return r.model_dump(mode="json")


@app.command("list")
def traffic_list(
    db: DbOption = None,
    domain: Annotated[str | None, typer.Option(help="Only this domain id.")] = None,
    judged: Annotated[
        bool | None, typer.Option("--judged/--unjudged", help="Only judged (or only unjudged) conversations.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """List captured conversations: turns, strategies used, judged score, harvested scenario."""
    store = open_store(db)
    rows = store.list_conversations(domain, "traffic", judged=judged)
    if json_out:
        print_json([_row_dict(r) for r in rows])
        return
    table(
        f"{len(rows)} captured conversations",
        ["id", "domain", "started", "messages", "strategies", "score", "scenario", "first message"],
        [
            (
                r.id,
                r.domain_id,
                r.started_at.strftime("%Y-%m-%d %H:%M") if r.started_at else "-",
                len(r.messages),
                len({ref for refs in r.strategies for ref in refs or []}),
                "-" if r.score is None else f"{r.score:.3f}",
                r.scenario_id or "-",
                short(next((str(m.get("content")) for m in r.messages if m.get("role") == "user"), ""), 50),
            )
            for r in rows
        ],
    )


@app.command("show")
def traffic_show(conversation_id: int, db: DbOption = None, json_out: JsonOption = False) -> None:
    """Show one captured conversation (or imported transcript): its messages, the strategies used
    for each answer, and its judgement."""
    store = open_store(db)
    r = store.get_conversation(conversation_id)
    if json_out:
        print_json(_row_dict(r))
        return
    say(f"conversation {r.id} ({r.source}, domain {r.domain_id})", style="bold")
    if r.meta:
        say("meta: " + ", ".join(f"{k}={v}" for k, v in r.meta.items() if v is not None))
    if r.redactions:
        say("redacted: " + ", ".join(f"{n} {k.lower()}" for k, n in sorted(r.redactions.items())))
    refs = list(r.strategies) + [[]] * (len(r.messages) - len(r.strategies))
    for m, used in zip(r.messages, refs, strict=False):
        role = m.get("role")
        who = {"user": "customer", "assistant": "agent"}.get(str(role), str(role))
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            say(f"  [agent calls {fn.get('name')}({fn.get('arguments')})]")
        if content:
            say(f"{who}: {content}")
        if used:
            say(f"  strategies: {', '.join(used)}", style="dim")
    j = r.judgement
    if j:
        say(
            f"judged {r.score:.3f} by {j.get('judge_model')}: {j.get('critique')} "
            f"(weakest agent turn {j.get('weakest_turn')})"
        )
    if r.scenario_id:
        say(f"harvested into scenario {r.scenario_id}")


@app.command("judge")
def traffic_judge(
    sample: Annotated[
        int | None, typer.Option("--sample", min=1, help="Judge this many, chosen at random (default: all).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Which sample: the same seed, the same conversations.")] = 0,
    poor_below: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="A conversation scoring below this counts as poor.")
    ] = 0.6,
    judge: ModelOption = None,
    domain: DomainOption = None,
    library_db: Annotated[
        str | None,
        typer.Option(
            help="The library's database, when the conversations were captured into another "
            "(serve --capture-db): the per-strategy counts go there."
        ),
    ] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Judge captured conversations not judged yet. Each judged conversation counts, for every
    strategy version used in it, as good or poor (shown in strategies list, show and the audit page)."""
    from ..engine.harvest import OfflineJob
    from ..engine.traffic import judge_traffic
    from ..roles import Judge
    from .views import progress

    store = open_store(db)
    d = resolve_domain(store, domain)
    counts = open_store(library_db) if library_db else None
    model = role_model("judge", judge)
    job = OfflineJob(
        store, d, "traffic-judge", {"sample": sample, "seed": seed, "models": {"judge": model.name}}
    )

    async def go() -> Any:
        try:
            with progress(not json_out) as rep:
                return await judge_traffic(
                    store,
                    d,
                    Judge(job.wrap(model, "judge"), d),
                    sample=sample,
                    seed=seed,
                    poor_below=poor_below,
                    counts_store=counts,
                    reporter=rep,
                )
        finally:
            await model.aclose()

    result = run_loop(go())
    summary = job.finish(result.as_dict())
    if json_out:
        print_json(summary)
        return
    good = len(result.judged) - result.poor
    say(
        f"judged {len(result.judged)} captured conversations: {good} good, "
        f"{result.poor} poor (below {poor_below:g})"
    )
    if result.judged:
        table("scores", ["conversation", "score"], [(c, f"{s:.3f}") for c, s in result.judged])
    for cid, why in result.skipped:
        say(f"skipped conversation {cid}: {why}")
    for cid, error in result.failures:
        say(f"failed conversation {cid}: {error}")


@app.command("harvest")
def traffic_harvest(
    below: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Harvest judged conversations scoring below this.")
    ] = 0.6,
    max_scenarios: Annotated[int, typer.Option("--max", min=1, help="Scenarios to harvest at most.")] = 5,
    teacher: ModelOption = None,
    domain: DomainOption = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Turn the weakest judged captured conversations into training scenarios (the conversation up
    to the weakest agent turn, replayed; persona and intent read by the teacher)."""
    from ..engine.harvest import HarvestConfig, Harvester, OfflineJob
    from ..roles import Teacher
    from .scenarios import _print_harvest

    store = open_store(db)
    d = resolve_domain(store, domain)
    rows = store.list_conversations(d.id, "traffic", judged=True, below=below, harvested=False)
    rows.sort(key=lambda r: (r.score if r.score is not None else 1.0, r.id or 0))
    if not rows:
        say(
            f"no judged captured conversation below {below:g} left to harvest (run: strategist traffic judge)"
        )
        return
    model = role_model("teacher", teacher)
    job = OfflineJob(
        store,
        d,
        "harvest",
        {"source": "traffic", "below": below, "max": max_scenarios, "models": {"teacher": model.name}},
    )

    async def go() -> Any:
        try:
            harvester = Harvester(
                store,
                d,
                Teacher(job.wrap(model, "teacher"), d),
                HarvestConfig(below=below, max=max_scenarios),
                ledger=job.ledger,
            )
            return await harvester.from_conversations(rows)
        finally:
            await model.aclose()

    result = run_loop(go())
    summary = job.finish({"source": "traffic", **result.as_dict()})
    if json_out:
        print_json(summary)
        return
    _print_harvest(result, "captured traffic")
