"""The strategist command line: ``strategist NOUN VERB``. Each group is its own Typer app in its
own module; this module only puts them together."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ..errors import StrategistError
from . import (
    dialogues,
    domains,
    evaluate,
    release,
    review,
    runs,
    runtime,
    scenarios,
    strategies,
    tools,
    traffic,
)
from . import grow as _grow
from .common import DbOption, DomainOption, StrategistGroup, db_target, open_store
from .views import say

if TYPE_CHECKING:
    from pathlib import Path

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
app.add_typer(scenarios.app, name="scenarios")
app.add_typer(strategies.app, name="strategies")
app.add_typer(runs.app, name="runs")
app.add_typer(dialogues.app, name="dialogues")
app.add_typer(domains.app, name="domains")
app.add_typer(tools.app, name="tools")
app.add_typer(traffic.app, name="traffic")
app.add_typer(release.app, name="release")
app.command("review")(review.review)
app.command("audit-ui")(review.audit_ui)
app.command("chat")(runtime.chat)
app.command("serve")(runtime.serve)
app.command("retrieve")(runtime.strategies_for)


@app.command()
def init(
    db: DbOption = None,
    domain: DomainOption = None,
) -> None:
    """Create strategist.toml (if missing) and the database, and load a domain pack (default:
    the shipped 'northwind' pack, for a new database).

    The settings file is ./strategist.toml, or $STRATEGIST_CONFIG. --domain takes a pack name or
    the path to a domain.yaml (or its folder).
    """
    from ..config import config_path, default_config_text
    from ..store.engine import integrity_problem, sqlite_path
    from .common import load_pack

    config = config_path()
    db_path = db_target(db)
    file = sqlite_path(db_path)
    existed = file is None or file.exists()
    store = None
    try:
        store = open_store(db_path, create=True)  # first, so a bad path leaves no half-made setup behind
        problem = integrity_problem(store.engine)
        if problem:
            raise StrategistError(
                f"{db_path}: the database file is damaged ({problem}): restore it from a backup"
            )
        known = [d.id for d in store.list_domains()]
        if domain is not None or not known:
            d, _ = load_pack(store, domain or "northwind")
            name = d.id
        else:
            name = known[0] if len(known) == 1 else ", ".join(known)
    except BaseException:
        if store is not None:
            store.close()
        if not existed and file is not None:
            _remove_database(file)  # a failed init leaves nothing behind
        raise
    if config.exists():
        say(f"kept existing {config}")
    else:
        try:
            config.write_text(default_config_text(db_path), encoding="utf-8")
        except OSError as exc:
            raise StrategistError(f"{config}: cannot write: {exc.strerror}") from None
        say(f"wrote {config}")
    n = sum(len(store.list_scenarios(d)) for d in [d.id for d in store.list_domains()])
    say(f"database {db_path}: domain '{name}' with {n} scenarios")


def _remove_database(file: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        file.with_name(file.name + suffix).unlink(missing_ok=True)


@app.command()
def path(db: DbOption = None) -> None:
    """Show where the settings file, the database, the response cache, packs and prompts are."""
    import os
    from pathlib import Path

    from ..config import config_path
    from ..packs import SHIPPED_DIR
    from ..prompting import PROMPTS_DIR
    from ..store.engine import sqlite_path

    cfg = config_path()
    target = db_target(db)
    file = sqlite_path(target)
    shown = str(file.resolve()) if file is not None else target
    say(f"settings: {cfg.resolve()}{'' if cfg.exists() else ' (missing: defaults apply)'}")
    say(
        f"database: {shown}"
        + ("" if file is None or file.exists() else " (missing: strategist init creates it)")
    )
    say(f"response cache: in the database ({shown}), unless grow or eval is given --cache-db")
    say(f"domain packs: {SHIPPED_DIR} (and ./scenarios: {Path('scenarios').resolve()})")
    override = os.environ.get("STRATEGIST_PROMPTS_DIR")
    say(f"prompts: {PROMPTS_DIR}" + (f" (overridden from {override})" if override else ""))


def main() -> None:
    app()
