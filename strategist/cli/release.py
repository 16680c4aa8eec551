"""``strategist release``: immutable snapshots of the approved strategies, labels that point at
one (production), promotion and rollback; every action is in the trail with who and when."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import DbOption, JsonOption, new_app, open_store, print_json
from .views import say, short, table

app = new_app("Releases: create, list, show, diff, promote, rollback, history.")

ReviewerOption = Annotated[
    str | None,
    typer.Option("--reviewer", help="Your name in the trail (default: git config user.name, then $USER)."),
]
NoteOption = Annotated[str, typer.Option("--note", help="Why: it goes into the trail.")]
LabelOption = Annotated[str, typer.Option("--label", help="The label, e.g. production.")]


def _actor(value: str | None) -> str:
    from ..audit.lifecycle import default_reviewer

    return value.strip() if value and value.strip() else default_reviewer()


def _when(row: Any) -> str:
    return f"{row.created_at:%Y-%m-%d %H:%M:%S}"


@app.command("create")
def release_create(
    name: Annotated[str, typer.Argument(help="The release's name (unique; a release never changes).")],
    note: NoteOption = "",
    reviewer: ReviewerOption = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Snapshot the approved strategies (ids and versions, every domain) as a new release."""
    store = open_store(db)
    row = store.create_release(name, actor=_actor(reviewer), note=note)
    if json_out:
        print_json(row.model_dump(mode="json"))
        return
    say(f"release '{row.name}': {row.size} approved strategies, created by {row.created_by} at {_when(row)}")


@app.command("list")
def release_list(db: DbOption = None, json_out: JsonOption = False) -> None:
    """List releases and the labels pointing at them."""
    store = open_store(db)
    releases = store.list_releases()
    labels = store.release_labels()
    by_release: dict[int, list[str]] = {}
    for label, row in labels.items():
        by_release.setdefault(row.release_id, []).append(label)
    if json_out:
        print_json(
            {
                "releases": [
                    {**r.model_dump(mode="json"), "labels": by_release.get(r.id or 0, [])} for r in releases
                ],
                "labels": {k: v.model_dump(mode="json") for k, v in labels.items()},
            }
        )
        return
    table(
        f"{len(releases)} releases",
        ["name", "strategies", "labels", "created by", "created", "note"],
        [
            (
                r.name,
                r.size,
                ", ".join(by_release.get(r.id or 0, [])) or "-",
                r.created_by,
                _when(r),
                short(r.note, 40),
            )
            for r in releases
        ],
    )
    for label, row in labels.items():
        target = next((r.name for r in releases if r.id == row.release_id), row.release_id)
        say(f"label {label} -> {target} (by {row.updated_by} at {row.updated_at:%Y-%m-%d %H:%M:%S})")


@app.command("show")
def release_show(
    name: Annotated[str, typer.Argument(help="A release name or a label.")],
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show a release: its strategies (the words of the pinned versions) and its trail."""
    store = open_store(db)
    row, label = store.resolve_release(name)
    items = store.released_strategies(row.id or 0)
    trail = store.release_actions(release_id=row.id)
    if json_out:
        print_json(
            {
                **row.model_dump(mode="json"),
                "label": label,
                "strategies": [
                    {
                        "id": s.strategy_id,
                        "version": s.version,
                        "domain": s.domain_id,
                        "trigger": s.trigger,
                        "guidance": s.guidance,
                        "example": s.example,
                    }
                    for s in items
                ],
                "trail": [a.model_dump(mode="json") for a in trail],
            }
        )
        return
    via = f" (label '{label}')" if label else ""
    say(
        f"release '{row.name}'{via}: {row.size} strategies, created by {row.created_by} at {_when(row)}",
        style="bold",
    )
    if row.note:
        say(f"note: {row.note}")
    table(
        "strategies", ["ref", "domain", "when"], [(s.ref, s.domain_id, short(s.trigger, 70)) for s in items]
    )
    _print_trail(store, trail)


def _print_trail(store: Any, trail: list[Any]) -> None:
    names = {r.id: r.name for r in store.list_releases()}
    rows = []
    for a in trail:
        what = {"created": "created", "promoted": "promoted", "rolled_back": "rolled back"}.get(
            a.action, a.action
        )
        target = names.get(a.release_id, a.release_id)
        where = f"{a.label}: {names.get(a.previous_release_id, '-')} -> {target}" if a.label else str(target)
        rows.append((_when(a), a.actor, what, where, short(a.note, 40)))
    table("trail", ["when", "who", "action", "what", "note"], rows)


@app.command("diff")
def release_diff(
    a: Annotated[str, typer.Argument(help="A release name or label.")],
    b: Annotated[str, typer.Argument(help="Another release name or label.")],
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """What changes from release A to release B: strategies added, removed, or at another version."""
    store = open_store(db)
    ra, _ = store.resolve_release(a)
    rb, _ = store.resolve_release(b)
    left = {s.strategy_id: s for s in store.released_strategies(ra.id or 0)}
    right = {s.strategy_id: s for s in store.released_strategies(rb.id or 0)}
    added = [right[i] for i in sorted(right.keys() - left.keys())]
    removed = [left[i] for i in sorted(left.keys() - right.keys())]
    changed = [
        (left[i], right[i]) for i in sorted(left.keys() & right.keys()) if left[i].version != right[i].version
    ]
    if json_out:
        print_json(
            {
                "from": ra.name,
                "to": rb.name,
                "added": [s.ref for s in added],
                "removed": [s.ref for s in removed],
                "changed": [{"from": x.ref, "to": y.ref} for x, y in changed],
            }
        )
        return
    say(
        f"{ra.name} -> {rb.name}: {len(added)} added, {len(removed)} removed, "
        f"{len(changed)} at another version"
    )
    rows = [("+", s.ref, short(s.trigger, 70)) for s in added]
    rows += [("-", s.ref, short(s.trigger, 70)) for s in removed]
    rows += [("~", f"{x.ref} -> v{y.version}", short(y.trigger, 70)) for x, y in changed]
    if rows:
        table("changes", ["", "strategy", "when"], rows)


@app.command("promote")
def release_promote(
    name: Annotated[str, typer.Argument(help="The release to point the label at.")],
    label: LabelOption = "production",
    note: NoteOption = "",
    reviewer: ReviewerOption = None,
    db: DbOption = None,
) -> None:
    """Point a label at a release (bots serving --release LABEL switch to it within seconds)."""
    store = open_store(db)
    before = store.label_target(label)
    action = store.promote_release(name, label, actor=_actor(reviewer), note=note, seen=before)
    old = store.release_by_id(before).name if before is not None else "(none)"
    say(f"label {label}: {old} -> {name} (promoted by {action.actor})")


@app.command("rollback")
def release_rollback(
    label: LabelOption = "production",
    note: NoteOption = "",
    reviewer: ReviewerOption = None,
    db: DbOption = None,
) -> None:
    """Point a label back at the release it pointed at before its latest promotion."""
    store = open_store(db)
    current = store.label_target(label)
    action = store.rollback_label(label, actor=_actor(reviewer), note=note)
    old = store.release_by_id(current).name if current is not None else "-"
    say(
        f"label {label}: {old} -> {store.release_by_id(action.release_id).name} "
        f"(rolled back by {action.actor})"
    )


@app.command("history")
def release_history(
    label: Annotated[str | None, typer.Option("--label", help="Only this label's actions.")] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Every release action: created, promoted, rolled back; who and when."""
    store = open_store(db)
    trail = store.release_actions(label=label)
    if json_out:
        print_json([a.model_dump(mode="json") for a in trail])
        return
    _print_trail(store, trail)
