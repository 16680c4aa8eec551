"""The strategist command line: ``strategist NOUN VERB``."""

from __future__ import annotations

import typer

from ..errors import StrategistError
from . import audit, evaluate, records, runtime, scenario_tools
from . import grow as _grow
from .common import DbOption, DomainOption, StrategistGroup, console

app = typer.Typer(
    cls=StrategistGroup,
    help="Grow, audit and use a library of strategies that make a small support bot act like a large one.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.command("grow")(_grow.grow)
app.command("eval")(evaluate.eval_command)
app.add_typer(records.scenarios_app, name="scenarios")
app.add_typer(records.strategies_app, name="strategies")
app.add_typer(records.runs_app, name="runs")
app.add_typer(records.domains_app, name="domains")
audit.register(app)
scenario_tools.register()
runtime.register(app)


@app.command()
def init(db: DbOption = None, domain: DomainOption = None) -> None:
    """Create strategist.toml (if missing) and the database, and load a domain pack.

    The settings file is ./strategist.toml, or $STRATEGIST_CONFIG.
    """
    from pathlib import Path

    from ..config import config_path, default_config_text, load_settings, resolve_db
    from ..store import Store, database_url
    from .common import resolve_domain

    config = config_path()
    db_path = resolve_db(db, load_settings())
    url = database_url(db_path)
    name = url.split(":///", 1)[1].split("?", 1)[0] if url.startswith("sqlite") and ":///" in url else ""
    new_file = Path(name) if name and name != ":memory:" and not Path(name).exists() else None
    store = Store.open(db_path)  # first, so a bad path leaves no half-made setup behind
    try:
        d = resolve_domain(store, domain)
        if config.exists():
            console.print(f"kept existing {config}")
        else:
            try:
                config.write_text(default_config_text(db_path), encoding="utf-8")
            except OSError as exc:
                raise StrategistError(f"{config}: cannot write: {exc.strerror}") from None
            console.print(f"wrote {config}")
    except BaseException:
        # A bad pack, say: a database file this command created is not left behind.
        store.close()
        if new_file is not None:
            for leftover in (new_file, *(new_file.with_name(new_file.name + x) for x in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)
        raise
    n = len(store.list_scenarios(d.id))
    console.print(f"database {db_path}: domain '{d.id}' with {n} scenarios")


@app.command()
def path(db: DbOption = None) -> None:
    """Show where the settings file and the database are."""
    import os

    from ..config import config_path, load_settings, resolve_db
    from ..packs import SHIPPED_DIR
    from ..prompting import PROMPTS_DIR

    cfg = config_path()
    console.print(f"settings: {cfg.resolve()}{'' if cfg.exists() else ' (missing: defaults apply)'}")
    console.print(f"database: {resolve_db(db, load_settings())}")
    console.print(f"domain packs: {SHIPPED_DIR}")
    override = os.environ.get("STRATEGIST_PROMPTS_DIR")
    console.print(f"prompts: {PROMPTS_DIR}" + (f" (overridden from {override})" if override else ""))


def main() -> None:
    app()
