"""Shared CLI plumbing. Heavy modules (database, models) are imported inside commands so that
``strategist --help`` starts fast and never imports litellm."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from ..errors import StrategistError, one_line

if TYPE_CHECKING:
    from ..core.domain import Domain, Scenario
    from ..store import Store

console = Console()
err_console = Console(stderr=True)


class StrategistGroup(TyperGroup):
    """Turns any StrategistError raised by a command into one line on stderr and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except StrategistError as exc:
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(1) from None


def new_app(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, rich_markup_mode=None)


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database file or URL (default: $STRATEGIST_DB, then strategist.toml, then strategist.db).",
    ),
]
DomainOption = Annotated[
    str | None, typer.Option("--domain", help="Domain id, pack name or path to domain.yaml.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON array of objects.")]


def open_store(db: str | None) -> Store:
    from ..config import load_settings, resolve_db
    from ..store import Store

    return Store.open(resolve_db(db, load_settings()))


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def resolve_domain(store: Store, value: str | None, *, import_scenarios: bool = True) -> Domain:
    """A domain from the database, or loaded from a pack (and stored) if it is not there yet.

    ``value`` falls back to strategist.toml, then to the only domain in the database, then (for
    an empty database) to the shipped 'northwind' pack.
    """
    from ..config import load_settings
    from ..errors import NotFoundError
    from ..packs import find_pack, load_domain, load_scenario_set

    value = value or load_settings().domain
    if value is None:
        known = [d.id for d in store.list_domains()]
        if len(known) > 1:
            raise StrategistError(
                f"the database holds several domains ({', '.join(known)}): choose one with --domain"
            )
        value = known[0] if known else "northwind"
    pack = find_pack(value)
    if pack is None:
        try:
            return store.get_domain(value)
        except NotFoundError:
            raise StrategistError(
                f"unknown domain '{value}': not in the database and no pack by that name"
            ) from None
    domain = load_domain(pack)
    scen_file = pack.parent / "scenarios.yaml"
    scenarios: list[Scenario] = []
    # Validate the whole pack before storing any of it, and import its scenarios while the domain
    # has none (a pack fixed after a failed load still gets them).
    if import_scenarios and scen_file.is_file() and not store.list_scenarios(domain.id):
        _, scenarios = load_scenario_set(scen_file, domain)
    store.upsert_domain(domain)
    for s in scenarios:
        store.add_scenario(s)
    return domain


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    console.print(t)


def short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
