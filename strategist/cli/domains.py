"""``strategist domains``: the domains in the database, and loading one from its pack."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import DbOption, JsonOption, load_pack, new_app, open_store, print_json
from .views import say, table

app = new_app("Domains: the packs loaded in the database.")


@app.command("list")
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
        ["id", "name", "scenarios", "loaded from"],
        [(r.id, r.name, len(store.list_scenarios(r.id)), r.source or "-") for r in rows],
    )
    say("shipped packs: " + (", ".join(shipped_packs()) or "none"))


@app.command("add")
def domains_add(
    pack: Annotated[str, typer.Argument(help="Pack name or path to a domain.yaml (or its folder).")],
    db: DbOption = None,
) -> None:
    """Load (or update) a domain from its pack; its scenarios.yaml is imported the first time.

    An update that drops an intent stored scenarios use is refused."""
    from ..packs import find_pack, load_domain

    found = find_pack(pack)
    if found is not None:
        load_domain(found)  # a bad pack is reported before any database file is made
    store = open_store(db, create=True)
    d, imported = load_pack(store, pack)
    total = len(store.list_scenarios(d.id))
    say(
        f"domain '{d.id}' loaded with {total} scenarios" + (f" ({imported} imported now)" if imported else "")
    )
