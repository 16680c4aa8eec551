"""Shared CLI plumbing. Heavy modules (database, models) are imported inside commands so that
``strategist --help`` starts fast and never imports litellm."""

from __future__ import annotations

import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from ..errors import StrategistError, one_line

if TYPE_CHECKING:
    from ..core.domain import Domain
    from ..store import Store

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, with asyncio imported here: only the commands that run a loop pay
    for it, not start-up (``--help``)."""
    import asyncio

    return asyncio.run(main)


console = Console()
err_console = Console(stderr=True)
# The databases the running command opened: named in database errors, closed when it ends (which
# also folds SQLite's write-ahead log back into the file).
_opened: list[str] = []
_stores: list[Store] = []


class StrategistGroup(TyperGroup):
    """Turns any StrategistError raised by a command into one line on stderr and exit code 1, and
    so does any error of the database driver (a read-only file, a lock held too long, a damaged
    file): a user mistake or a broken file is never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except StrategistError as exc:
            fail(one_line(exc))
        except Exception as exc:
            sa = sys.modules.get("sqlalchemy")
            if sa is None or not isinstance(exc, sa.exc.DBAPIError | sa.exc.OperationalError):
                raise
            from ..store.engine import database_error

            fail(one_line(database_error(exc, _opened[-1] if _opened else None)))
        finally:
            while _stores:
                _stores.pop().close()
            _opened.clear()


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def new_app(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, rich_markup_mode=None)


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database file or URL (default: $STRATEGIST_DB, then strategist.toml, then strategist.db).",
    ),
]
DomainOption = Annotated[str | None, typer.Option("--domain", help="Domain id (a domain in the database).")]
# Options that grow and eval share.
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Model for this role: any litellm name or embedded/smollm2 (default: "
        "$STRATEGIST_<ROLE>_MODEL, then strategist.toml, then embedded/smollm2)."
    ),
]
MaxTurnsOption = Annotated[int | None, typer.Option(min=1, help="Cap on agent turns per dialogue.")]
MaxToolStepsOption = Annotated[
    int | None,
    typer.Option(min=1, help="Tool steps per agent turn (default: the domain's tools.max_steps, else 4)."),
]
LimitOption = Annotated[
    int | None,
    typer.Option(min=1, help="Only the first N scenarios (by id) of the split it uses: a quick trial."),
]
ConcurrencyOption = Annotated[int, typer.Option(min=1, help="Dialogues run at once.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON (an array for lists, an object for one).")
]


def db_target(db: str | None) -> str:
    from ..config import load_settings, resolve_db

    return resolve_db(db, load_settings())


def open_store(db: str | None, *, create: bool = False) -> Store:
    """The library's database. Only commands that create (init, grow, imports) may create the
    file: for every other command a database that does not exist is a mistyped path."""
    from ..store import Store
    from ..store.engine import require_existing

    target = db_target(db)
    if not create:
        require_existing(target)
    _opened.append(target)
    store = Store.open(target)
    _stores.append(store)
    return store


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def resolve_domain(store: Store, value: str | None, *, load_into_empty: bool = False) -> Domain:
    """The domain a command works on, from the database.

    ``value`` falls back to strategist.toml, then to the only domain in the database. A stored
    domain is never replaced by a pack here (that is ``init --domain`` and ``domains add``): the
    stored one is the user's. When the pack file it was loaded from has changed since, a note says
    so. ``load_into_empty`` (commands that create, like grow): a database with no domain at all
    gets the pack loaded, as ``init`` would.
    """
    from ..config import load_settings
    from ..errors import NotFoundError

    value = value or load_settings().domain
    if load_into_empty and not store.list_domains():
        domain, _ = load_pack(store, value or "northwind")
        err_console.print(f"loaded domain '{domain.id}' into the new database", markup=False, highlight=False)
        return domain
    if value is None:
        known = [d.id for d in store.list_domains()]
        if len(known) > 1:
            raise StrategistError(
                f"the database holds several domains ({', '.join(known)}): choose one with --domain"
            )
        if not known:
            raise StrategistError("the database holds no domain yet: load one with strategist init")
        value = known[0]
    try:
        domain = store.get_domain(value)
    except NotFoundError:
        from ..packs import find_pack

        hint = f"strategist domains add {value}" if find_pack(value) else "strategist domains add PACK"
        raise StrategistError(
            f"unknown domain '{value}': it is not in the database (load it with: {hint})"
        ) from None
    _note_changed_pack(store, domain.id)
    return domain


def _note_changed_pack(store: Store, domain_id: str) -> None:
    from ..packs import pack_digest

    row = store.domain_row(domain_id)
    if row is None or not row.source:
        return
    source = Path(row.source)
    digest = pack_digest(source)
    if digest is not None and digest != row.source_digest:
        err_console.print(
            f"note: {source} has changed since domain '{domain_id}' was loaded from it; the stored "
            f"domain is used (apply the file with: strategist domains add {source})",
            markup=False,
            highlight=False,
        )


def load_pack(store: Store, name_or_path: str, *, with_scenarios: bool = True) -> tuple[Domain, int]:
    """Load (or update) a domain from its pack, and import its scenarios.yaml the first time.
    Returns the domain and how many scenarios were imported. Nothing is stored if any of it is
    invalid; an update that drops an intent stored scenarios use is refused."""
    from ..core.domain import Scenario
    from ..errors import NotFoundError
    from ..packs import find_pack, load_domain, load_scenario_set, pack_digest

    pack = find_pack(name_or_path)
    if pack is None:
        raise StrategistError(
            f"no domain pack '{name_or_path}' (a domain.yaml, its folder, or a shipped pack name)"
        )
    domain = load_domain(pack)
    scenarios: list[Scenario] = []
    stored = store.list_scenarios(domain.id)
    try:
        store.get_domain(domain.id)
    except NotFoundError:
        pass
    else:
        kept = {i.id for i in domain.intents}
        used = sorted({s.intent for s in stored} - kept)
        if used:
            raise StrategistError(
                f"{pack}: intents: the pack drops intent '{used[0]}' that stored scenarios of domain "
                f"'{domain.id}' use; keep it in the pack (or move those scenarios first)"
            )
    scen_file = pack.parent / "scenarios.yaml"
    # Validate the whole pack before storing any of it, and import its scenarios while the domain
    # has none (a pack fixed after a failed load still gets them).
    if with_scenarios and scen_file.is_file() and not stored:
        _, scenarios = load_scenario_set(scen_file, domain)
    store.add_scenarios(scenarios, domain=domain, source=(str(pack.resolve()), pack_digest(pack)))
    return domain, len(scenarios)


def role_model(role: str, flag: str | None) -> Any:
    """The model for one role: the flag, then $STRATEGIST_<ROLE>_MODEL, strategist.toml, the default."""
    from ..config import load_settings, resolve_roles
    from ..models import resolve_model

    cfg = resolve_roles({role: flag}, load_settings())[role]
    return resolve_model(cfg.model, **cfg.options())
