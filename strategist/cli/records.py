"""Commands that list and show what is stored: scenarios, strategies, runs, domains."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import DbOption, DomainOption, JsonOption, console, new_app, open_store, print_json, short, table

scenarios_app = new_app("Scenarios: list, show, import.")
strategies_app = new_app("Strategies: list, show, review, export and import the library.")
runs_app = new_app("Runs: what each grow did and what it cost.")
domains_app = new_app("Domains: the packs loaded in the database.")

STATUSES = ("pending", "approved", "rejected", "retired")


class Split(enum.StrEnum):
    train = "train"
    dev = "dev"
    test = "test"


# -- scenarios ---------------------------------------------------------------------------------
@scenarios_app.command("list")
def scenarios_list(
    db: DbOption = None,
    domain: Annotated[str | None, typer.Option(help="Only this domain id.")] = None,
    split: Annotated[Split | None, typer.Option(help="Only this split.")] = None,
    json_out: JsonOption = False,
) -> None:
    """List scenarios."""
    store = open_store(db)
    items = store.list_scenarios(domain, split.value if split else None)
    if json_out:
        print_json([s.model_dump(mode="json") for s in items])
        return
    table(
        f"{len(items)} scenarios",
        ["id", "domain", "split", "origin", "intent", "difficulty", "title"],
        [(s.id, s.domain, s.split, s.origin, s.intent, s.difficulty, short(s.title, 50)) for s in items],
    )


@scenarios_app.command("show")
def scenarios_show(scenario_id: int, db: DbOption = None, json_out: JsonOption = False) -> None:
    """Show one scenario and its latest judged dialogues."""
    store = open_store(db)
    s = store.get_scenario(scenario_id)
    if json_out:
        print_json(s.model_dump(mode="json"))
        return
    console.print(f"[bold]scenario {s.id}[/]: {s.title}")
    console.print(f"domain {s.domain} | intent {s.intent} | {s.difficulty} | {s.origin} | split {s.split}")
    console.print("persona: " + ", ".join(f"{k}={v}" for k, v in s.persona.items()))
    console.print(f"goal: {s.goal}")
    for label, facts in (("knows", s.known_facts), ("reveals when asked", s.hidden_facts)):
        for f in facts:
            console.print(f"  {label}: {f}")
    console.print(f"opening: {s.opening}")
    console.print("must say: " + ("; ".join(c.label for c in s.success.must_say) or "-"))
    console.print("must not say: " + ("; ".join(c.label for c in s.success.must_not_say) or "-"))
    for r in s.success.rubric:
        console.print(f"  rubric: {r}")
    rows = store.dialogues_for_scenario(scenario_id)
    if rows:
        recent = rows[-10:]
        table(
            f"dialogues ({len(rows)}, latest {len(recent)})",
            ["id", "run", "condition", "seed", "turns", "score"],
            [(d.id, d.run_id, d.condition, d.seed, len(d.turns), _score(store, d.id)) for d in recent],
        )


def _score(store: Any, dialogue_id: int | None) -> str:
    j = store.judgement_for(dialogue_id) if dialogue_id is not None else None
    return "-" if j is None else f"{j.score:.3f}"


@scenarios_app.command("import")
def scenarios_import(
    file: Annotated[Path, typer.Argument(help="A scenario set YAML file.")],
    db: DbOption = None,
    domain: DomainOption = None,
) -> None:
    """Import a scenario set (YAML) into its domain; the domain must be loaded or be a pack name."""
    from ..packs import load_scenario_set, read_yaml
    from .common import resolve_domain

    store = open_store(db)
    raw = read_yaml(file)
    from_file = raw.get("domain") if isinstance(raw, dict) else None
    if domain is None and from_file is not None and not isinstance(from_file, str):
        from ..errors import InputError

        raise InputError(str(file), "domain", "expected a domain id (a string)")
    dom_name = domain or from_file
    d = resolve_domain(store, dom_name, import_scenarios=False)
    _, items = load_scenario_set(file, d)  # validates everything before storing anything
    for s in items:
        store.add_scenario(s)
    console.print(f"imported {len(items)} scenarios into domain '{d.id}'")


# -- strategies --------------------------------------------------------------------------------
def _strategy_dict(row: Any) -> dict[str, Any]:
    return row.model_dump(mode="json")


@strategies_app.command("list")
def strategies_list(
    db: DbOption = None,
    domain: Annotated[str | None, typer.Option(help="Only this domain id.")] = None,
    status: Annotated[
        list[str] | None, typer.Option(help=f"Only these statuses: {', '.join(STATUSES)}.")
    ] = None,
    flagged: Annotated[
        bool, typer.Option("--flagged", help="Only strategies the policy check found in conflict.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """List strategies with their status, gate gain and policy flag."""
    from ..audit.policy import policy_flag

    for st in status or []:
        if st not in STATUSES:
            raise typer.BadParameter(f"'{st}' is not one of {', '.join(STATUSES)}", param_hint="--status")
    store = open_store(db)
    rows = store.list_strategies(domain, status)
    if flagged:
        rows = [r for r in rows if r.policy_check and r.policy_check.get("conflict")]
    if json_out:
        print_json([_strategy_dict(r) for r in rows])
        return

    def ci(r: Any) -> str:
        e = r.evidence
        if e.get("ci_low") is None or e.get("mean_delta") is None:
            return "-"
        return f"{e['mean_delta']:+.3f} [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]"

    table(
        f"{len(rows)} strategies",
        ["id", "domain", "status", "v", "gain [CI]", "policy", "trigger"],
        [
            (
                r.id,
                r.domain_id,
                r.status,
                r.version,
                ci(r),
                short(policy_flag(r.policy_check, r.version), 30),
                short(r.trigger, 50),
            )
            for r in rows
        ],
    )


@strategies_app.command("show")
def strategies_show(
    strategy_id: int,
    db: DbOption = None,
    dialogues: Annotated[
        int, typer.Option(min=0, help="Before/after dialogue pairs to show side by side.")
    ] = 1,
    json_out: JsonOption = False,
) -> None:
    """Show one strategy: text, status, policy verdict, provenance, gate evidence and dialogues."""
    from .audit import print_strategy

    store = open_store(db)
    r = store.get_strategy(strategy_id)
    if json_out:
        d = _strategy_dict(r)
        d["versions"] = [v.model_dump(mode="json") for v in store.strategy_versions(strategy_id)]
        d["reviews"] = [v.model_dump(mode="json") for v in store.reviews(strategy_id)]
        print_json(d)
        return
    print_strategy(store, r, dialogues=dialogues)


# -- runs --------------------------------------------------------------------------------------
@runs_app.command("list")
def runs_list(db: DbOption = None, json_out: JsonOption = False) -> None:
    """List grow runs."""
    store = open_store(db)
    rows = store.list_runs()
    if json_out:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table(
        f"{len(rows)} runs",
        ["id", "domain", "status", "started", "calls", "accepted", "stop reason"],
        [
            (
                r.id,
                r.domain_id,
                r.status,
                r.started_at.strftime("%Y-%m-%d %H:%M"),
                r.summary.get("llm_calls"),
                r.summary.get("accepted"),
                r.stop_reason,
            )
            for r in rows
        ],
    )


@runs_app.command("show")
def runs_show(run_id: int, db: DbOption = None, json_out: JsonOption = False) -> None:
    """Show a run's summary, its settings, the strategies it proposed (and what the gate decided)
    and its recorded failures."""
    from .grow import print_summary

    store = open_store(db)
    r = store.get_run(run_id)
    events = store.events(run_id)
    candidates = store.list_candidates(run_id)
    if json_out:
        d = r.model_dump(mode="json")
        d["events"] = [e.model_dump(mode="json") for e in events]
        d["candidates"] = [c.model_dump(mode="json") for c in candidates]
        print_json(d)
        return
    if r.summary:
        print_summary(r.summary)
    console.print("models: " + ", ".join(f"{k}={v}" for k, v in r.config.get("models", {}).items()))
    if candidates:
        table(
            f"{len(candidates)} proposed strategies",
            ["id", "round", "outcome", "strategy", "trigger", "gate"],
            [
                (c.id, c.round, c.outcome, c.strategy_id, short(c.trigger), short(c.reason, 70))
                for c in candidates
            ],
        )
    for e in events:
        console.print(f"  [{e.kind}] round {e.round}: {e.message}")


# -- domains -----------------------------------------------------------------------------------
@domains_app.command("list")
def domains_list(db: DbOption = None, json_out: JsonOption = False) -> None:
    """List the domains in the database and the packs that ship with strategist."""
    from ..packs import shipped_packs

    store = open_store(db)
    rows = store.list_domains()
    if json_out:
        print_json([{"id": r.id, "name": r.name, "scenarios": len(store.list_scenarios(r.id))} for r in rows])
        return
    table(
        f"{len(rows)} domains",
        ["id", "name", "scenarios"],
        [(r.id, r.name, len(store.list_scenarios(r.id))) for r in rows],
    )
    console.print("shipped packs: " + (", ".join(shipped_packs()) or "none"))


@domains_app.command("add")
def domains_add(
    pack: Annotated[str, typer.Argument(help="Pack name or path to a domain.yaml (or its folder).")],
    db: DbOption = None,
) -> None:
    """Load (or update) a domain pack; its scenarios.yaml is imported the first time."""
    from .common import resolve_domain

    store = open_store(db)
    d = resolve_domain(store, pack)
    console.print(f"domain '{d.id}' loaded with {len(store.list_scenarios(d.id))} scenarios")
