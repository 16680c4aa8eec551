"""``strategist scenarios split`` and ``strategist scenarios import-tau2`` (the eval work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import StrategistError
from .common import DbOption, DomainOption, console, open_store, print_json, table
from .records import scenarios_app


def register() -> None:
    """Commands are added to ``scenarios_app`` (from .records) by the decorators in this module."""
    assert scenarios_app is not None


@scenarios_app.command("split")
def scenarios_split(
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same assignment.")],
    test: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of scenarios for test.")] = 0.3,
    dev: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of scenarios for dev.")] = 0.0,
    domain: DomainOption = None,
    db: DbOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the counts as a JSON object.")] = False,
) -> None:
    """Assign every scenario of a domain to train, dev or test, stratified by intent.

    Replaces the domain's current splits. grow only ever uses train scenarios.
    """
    from ..core.splits import SPLITS, assign_splits, split_counts
    from .common import resolve_domain

    if test + dev > 1.0 + 1e-9:
        raise StrategistError(f"--test {test:g} plus --dev {dev:g} is more than 1")
    store = open_store(db)
    d = resolve_domain(store, domain)
    items = store.list_scenarios(d.id)
    if not items:
        raise StrategistError(f"domain '{d.id}' has no scenarios to split")
    intents = {s.id: s.intent for s in items if s.id is not None}
    assignment = assign_splits(intents.items(), test=test, dev=dev, seed=seed)
    store.set_splits(assignment)
    by_intent = split_counts(assignment, intents)
    counts = {sp: sum(row[sp] for row in by_intent.values()) for sp in SPLITS}
    if json_out:
        print_json(
            {"domain": d.id, "seed": seed, "test": test, "dev": dev, "counts": counts, "by_intent": by_intent}
        )
        return
    table(
        f"{len(items)} scenarios of '{d.id}' split with seed {seed}",
        ["intent", *SPLITS],
        [
            *[(intent, *(row[sp] for sp in SPLITS)) for intent, row in by_intent.items()],
            ("total", *(counts[sp] for sp in SPLITS)),
        ],
    )


@scenarios_app.command("import-tau2")
def scenarios_import_tau2(
    folder: Annotated[
        Path,
        typer.Argument(help="A tau2-bench domain folder: policy.md, tasks.json, split_tasks.json, db.json."),
    ],
    name: Annotated[str, typer.Option("--name", help="Name of the new domain (its id is this, as a slug).")],
    db: DbOption = None,
) -> None:
    """Import a tau2-bench domain as a new domain with one scenario per task.

    Everything is read and checked first; a bad file stores nothing.
    """
    from ..importers.tau2 import load_tau2

    result = load_tau2(folder, name)
    d = result.domain
    store = open_store(db)
    existing = store.list_scenarios(d.id)
    if existing:
        raise StrategistError(
            f"domain '{d.id}' already has {len(existing)} scenarios: import under another --name"
        )
    store.add_scenarios(result.scenarios, domain=d)
    counts = result.split_counts()
    console.print(
        f"imported {len(result.scenarios)} scenarios into domain '{d.id}' "
        f"(train {counts['train']}, dev {counts['dev']}, test {counts['test']}; "
        f"{len(d.intents)} intents)"
    )
    if result.used_db:
        console.print(
            f"db.json: the customer's records found for {len(result.customers_found)} "
            f"of {len(result.scenarios)} tasks"
        )
