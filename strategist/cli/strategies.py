"""``strategist strategies``: list, show, approve, reject, retire, edit, history, check, export,
import — the library and its review trail."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..audit.lifecycle import STATUSES
from ..errors import StrategistError, one_line
from .common import DbOption, JsonOption, console, new_app, open_store, print_json, run_loop
from .views import print_strategy, say, short, table

if TYPE_CHECKING:
    from ..audit.lifecycle import Action
    from ..models.base import ChatModel
    from ..store import Store
    from ..store.tables import StrategyRow

app = new_app("Strategies: list, show, review, export and import the library.")


class AuditUsageError(StrategistError):
    """A review command was given a combination of options that makes no sense."""


ReviewerOption = Annotated[
    str | None,
    typer.Option("--reviewer", help="Your name in the trail (default: git config user.name, then $USER)."),
]
NoteOption = Annotated[str, typer.Option("--note", help="Why: it goes into the review trail.")]
VersionOption = Annotated[
    int | None,
    typer.Option(
        "--version",
        min=1,
        help="The version you reviewed (default: the current one). If the strategy changed since, "
        "nothing is written and you get a conflict error.",
    ),
]
JudgeOption = Annotated[
    str | None, typer.Option("--judge", help="Judge model (default: settings, then embedded/smollm2).")
]
DomainFilter = Annotated[str | None, typer.Option("--domain", help="Only this domain id.")]


def _reviewer(value: str | None) -> str:
    from ..audit.lifecycle import default_reviewer

    return value.strip() if value and value.strip() else default_reviewer()


# -- strategies --------------------------------------------------------------------------------
def _strategy_dict(row: Any) -> dict[str, Any]:
    return row.model_dump(mode="json")


@app.command("list")
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
        outcomes = store.strategy_outcomes([r.id for r in rows if r.id is not None])
        print_json([{**_strategy_dict(r), "traffic": _outcomes_json(outcomes.get(r.id or 0))} for r in rows])
        return

    from ..audit.evidence import gain_text
    from ..core.evidence import GateEvidence

    # On a narrow terminal the trigger keeps room to be read: the gain loses its interval, the
    # policy flag its clause, and the domain column goes when every row has the same one.
    narrow = console.width < 120
    one_domain = len({r.domain_id for r in rows}) <= 1
    from ..audit.production import traffic_cell

    outcomes = store.strategy_outcomes([r.id for r in rows if r.id is not None])
    columns = ["id", "domain", "status", "v", "gain [CI]", "policy", "traffic", "trigger"]
    # On a narrow terminal the production counts take room only when there are some.
    with_traffic = not narrow or bool(outcomes)
    if narrow:
        columns = [
            "id",
            *([] if one_domain else ["domain"]),
            "status",
            "v",
            "gain",
            "policy",
            *(["traffic"] if with_traffic else []),
            "trigger",
        ]

    def cells(r: StrategyRow) -> tuple[Any, ...]:
        e = GateEvidence.from_stored(r.evidence)
        flag = policy_flag(r.policy_check, r.version)
        if not narrow:
            return (
                r.id,
                r.domain_id,
                r.status,
                r.version,
                gain_text(e),
                short(flag, 30),
                traffic_cell(outcomes.get(r.id or 0)),
                short(r.trigger, 50),
            )
        gain = "-" if e.mean_delta is None else f"{e.mean_delta:+.3f}"
        domain_cell = () if one_domain else (r.domain_id,)
        traffic = (traffic_cell(outcomes.get(r.id or 0)),) if with_traffic else ()
        return (r.id, *domain_cell, r.status, r.version, gain, flag.split(":")[0], *traffic, r.trigger)

    table(f"{len(rows)} strategies", columns, [cells(r) for r in rows])


@app.command("show")
def strategies_show(
    strategy_id: int,
    db: DbOption = None,
    dialogues: Annotated[
        int, typer.Option(min=0, help="Before/after dialogue pairs to show side by side.")
    ] = 1,
    json_out: JsonOption = False,
) -> None:
    """Show one strategy: text, status, policy verdict, provenance, gate evidence and dialogues."""
    store = open_store(db)
    r = store.get_strategy(strategy_id)
    if json_out:
        d = _strategy_dict(r)
        d["versions"] = [v.model_dump(mode="json") for v in store.strategy_versions(strategy_id)]
        d["reviews"] = [v.model_dump(mode="json") for v in store.reviews(strategy_id)]
        d["traffic"] = _outcomes_json(store.strategy_outcomes([strategy_id]).get(strategy_id))
        print_json(d)
        return
    print_strategy(store, r, dialogues=dialogues)


def _outcomes_json(outcomes: dict[int, tuple[int, int]] | None) -> dict[str, Any]:
    """Judged captured conversations this strategy was in, good and poor, per version and in all."""
    by_version = {f"v{v}": {"good": g, "poor": p} for v, (g, p) in sorted((outcomes or {}).items())}
    good = sum(x["good"] for x in by_version.values())
    poor = sum(x["poor"] for x in by_version.values())
    return {"good": good, "poor": poor, "by_version": by_version}


# -- single review actions -----------------------------------------------------------------------
def _act(
    store: Store,
    strategy_id: int,
    action: Action,
    *,
    reviewer: str | None,
    note: str,
    version: int | None,
    text: Any = None,
    approve_too: bool = False,
    seen: StrategyRow | None = None,
) -> StrategyRow:
    from ..audit.lifecycle import ReviewRequest

    seen = seen or store.get_strategy(strategy_id)  # the state this command looked at
    # --version N says which version the reviewer saw, not in which status: the status this
    # command read belongs to the version it read, so it goes with that version only.
    seen_version = seen.version if version is None else version
    row = store.review(
        ReviewRequest(
            strategy_id,
            action,
            _reviewer(reviewer),
            note,
            seen_version=seen_version,
            seen_status=seen.status if seen_version == seen.version else None,
            text=text,
            approve=approve_too,
        )
    )
    say(f"strategy {row.id}: {seen.status} v{seen.version} -> {row.status} v{row.version}")
    return row


@app.command("approve")
def approve(
    strategy_id: Annotated[int | None, typer.Argument(help="Strategy id (or use --all-pending).")] = None,
    note: NoteOption = "",
    version: VersionOption = None,
    reviewer: ReviewerOption = None,
    all_pending: Annotated[
        bool, typer.Option("--all-pending", help="Approve every pending strategy that passes the filters.")
    ] = False,
    min_delta: Annotated[
        float | None,
        typer.Option(
            "--min-delta", help="With --all-pending: only strategies whose mean paired gain is at least this."
        ),
    ] = None,
    domain: DomainFilter = None,
    include_flagged: Annotated[
        bool,
        typer.Option(
            "--include-flagged", help="With --all-pending: also approve strategies the policy check flagged."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Approve a pending strategy, or many at once with --all-pending (all or nothing)."""
    store = open_store(db)
    if not all_pending:
        if strategy_id is None:
            raise AuditUsageError("give a strategy id, or --all-pending")
        if min_delta is not None or include_flagged or domain:
            raise AuditUsageError("--min-delta, --domain and --include-flagged go with --all-pending")
        _act(store, strategy_id, "approve", reviewer=reviewer, note=note, version=version)
        return
    if strategy_id is not None or version is not None:
        raise AuditUsageError("--all-pending takes no strategy id and no --version")
    _approve_all(store, note, _reviewer(reviewer), min_delta, domain, include_flagged)


def _approve_all(
    store: Store, note: str, reviewer: str, min_delta: float | None, domain: str | None, include_flagged: bool
) -> None:
    from ..audit.lifecycle import ReviewRequest
    from ..core.evidence import GateEvidence

    chosen, skipped = [], []
    for r in store.list_strategies(domain, ["pending"]):
        gain = GateEvidence.from_stored(r.evidence).mean_delta
        if min_delta is not None and (gain is None or gain < min_delta):
            skipped.append(
                (r.id, "no gate evidence" if gain is None else f"gain {gain:+.3f} < {min_delta:+.3f}")
            )
        elif r.policy_check and r.policy_check.get("conflict") and not include_flagged:
            skipped.append((r.id, "policy conflict: " + short(str(r.policy_check.get("clause")), 40)))
        else:
            chosen.append(r)
    if chosen:
        store.review_many(
            [
                ReviewRequest(
                    r.id or 0, "approve", reviewer, note, seen_version=r.version, seen_status=r.status
                )
                for r in chosen
            ]
        )
    say(
        f"approved {len(chosen)} strategies" + (": " + ", ".join(str(r.id) for r in chosen) if chosen else "")
    )
    if skipped:
        table("left pending", ["id", "why"], skipped)


@app.command("reject")
def reject(
    strategy_id: Annotated[int, typer.Argument(help="Strategy id.")],
    note: Annotated[str, typer.Option("--note", help="Why it is rejected (required).")] = "",
    version: VersionOption = None,
    reviewer: ReviewerOption = None,
    db: DbOption = None,
) -> None:
    """Reject a pending strategy; a note saying why is required."""
    _act(open_store(db), strategy_id, "reject", reviewer=reviewer, note=note, version=version)


@app.command("retire")
def retire(
    strategy_id: Annotated[int, typer.Argument(help="Strategy id.")],
    note: Annotated[str, typer.Option("--note", help="Why it is retired (required).")] = "",
    version: VersionOption = None,
    reviewer: ReviewerOption = None,
    db: DbOption = None,
) -> None:
    """Take an approved strategy out of use; a note saying why is required."""
    _act(open_store(db), strategy_id, "retire", reviewer=reviewer, note=note, version=version)


@app.command("edit")
def edit(
    strategy_id: Annotated[int, typer.Argument(help="Strategy id.")],
    trigger: Annotated[str | None, typer.Option("--trigger", help="New trigger (when it applies).")] = None,
    guidance: Annotated[str | None, typer.Option("--guidance", help="New guidance (what to do).")] = None,
    example: Annotated[str | None, typer.Option("--example", help="New example phrasing.")] = None,
    approve_too: Annotated[
        bool, typer.Option("--approve", help="Approve the new version in the same action.")
    ] = False,
    note: NoteOption = "",
    version: VersionOption = None,
    reviewer: ReviewerOption = None,
    db: DbOption = None,
) -> None:
    """Change a strategy's words: a new version. Without --trigger/--guidance/--example, opens $EDITOR.

    An approved strategy goes back to pending unless --approve is given."""
    import click

    from ..audit.forms import edit_form, parse_edit_form
    from ..audit.lifecycle import Text, clean_text

    store = open_store(db)
    row = store.get_strategy(strategy_id)
    current = Text(row.trigger, row.guidance, row.example)
    if trigger is None and guidance is None and example is None:
        edited = click.edit(edit_form(strategy_id, row.version, row.status, current), extension=".yaml")
        form = parse_edit_form(edited) if edited is not None else None
        if form is None or not form.text.changed_fields(current):
            say("no changes; nothing saved")
            return
        new, note = form.text, form.note.strip() or note
    else:
        new = clean_text(
            current.trigger if trigger is None else trigger,
            current.guidance if guidance is None else guidance,
            current.example if example is None else example,
        )
    _act(
        store,
        strategy_id,
        "edit",
        reviewer=reviewer,
        note=note,
        version=version,
        text=new,
        approve_too=approve_too,
        seen=row,
    )


@app.command("history")
def history(
    strategy_id: Annotated[int, typer.Argument(help="Strategy id.")],
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Every version of a strategy and every review action on it."""
    store = open_store(db)
    row = store.get_strategy(strategy_id)
    versions, reviews = store.strategy_versions(strategy_id), store.reviews(strategy_id)
    if json_out:
        print_json(
            {
                "strategy": row.model_dump(mode="json"),
                "versions": [v.model_dump(mode="json") for v in versions],
                "reviews": [r.model_dump(mode="json") for r in reviews],
            }
        )
        return
    say(f"strategy {row.id}: now {row.status}, version {row.version}", style="bold")
    for v in versions:
        say(f"version {v.version} by {v.author}, {v.created_at:%Y-%m-%d %H:%M}", style="bold")
        say(f"  when: {v.trigger}")
        say(f"  do: {v.guidance}")
        if v.example:
            say(f"  example: {v.example}")

    def status_change(r: Any) -> str:
        before = (r.before or {}).get("status")
        after = (r.after or {}).get("status")
        return f"{before or '-'} -> {after}" if before != after else str(after)

    table(
        "reviews",
        ["when", "reviewer", "action", "version", "status", "note"],
        [
            (f"{r.created_at:%Y-%m-%d %H:%M}", r.reviewer, r.action, r.version, status_change(r), r.note)
            for r in reviews
        ],
    )


# -- policy check ----------------------------------------------------------------------------------
def _judge_model(judge: str | None) -> ChatModel:
    from ..config import load_settings, resolve_roles
    from ..models import resolve_model

    cfg = resolve_roles({"judge": judge}, load_settings())["judge"]
    return resolve_model(cfg.model, **cfg.options())


def run_policy_checks(store: Store, rows: list[StrategyRow], model: ChatModel) -> list[tuple[int, str]]:
    """Check each strategy and store the verdicts. Returns (id, error) for those that failed."""
    from ..audit.lifecycle import Text
    from ..audit.policy import PolicyChecker
    from ..engine.ledger import Ledger
    from ..errors import ModelError

    ledger = Ledger(store=store)  # every judge call lands in the call ledger, like a run's
    checker = PolicyChecker(ledger.wrap(model, "judge"))
    failed: list[tuple[int, str]] = []

    async def go() -> None:
        try:
            for r in rows:
                assert r.id is not None
                try:
                    result = await checker.check(
                        store.get_domain(r.domain_id),
                        Text(r.trigger, r.guidance, r.example),
                        version=r.version,
                    )
                except ModelError as exc:
                    failed.append((r.id, one_line(exc)))
                    continue
                store.set_policy_check(r.id, result)
        finally:
            ledger.flush()
            await model.aclose()

    run_loop(go())
    return failed


@app.command("check")
def check(
    strategy_id: Annotated[int | None, typer.Argument(help="Strategy id (or use --all).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Check every pending and approved strategy.")] = False,
    judge: JudgeOption = None,
    domain: DomainFilter = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Ask the judge model whether a strategy conflicts with the domain policy; store the verdict."""
    from ..audit.policy import policy_flag

    if (strategy_id is None) == (not all_):
        raise AuditUsageError("give a strategy id or --all (not both)")
    store = open_store(db)
    rows = [store.get_strategy(strategy_id)] if strategy_id is not None else []
    if all_:
        rows = store.list_strategies(domain, ["pending", "approved"])
    failed = run_policy_checks(store, rows, _judge_model(judge))
    fresh = [store.get_strategy(r.id or 0) for r in rows]
    if json_out:
        print_json([{"id": r.id, "policy_check": r.policy_check} for r in fresh])
    else:
        table(
            f"policy check of {len(rows)} strategies",
            ["id", "status", "policy", "explanation"],
            [
                (
                    r.id,
                    r.status,
                    policy_flag(r.policy_check, r.version),
                    short(str((r.policy_check or {}).get("explanation", "")), 70),
                )
                for r in fresh
            ],
        )
    if failed:
        raise StrategistError(
            f"{len(failed)} of {len(rows)} checks failed: "
            + "; ".join(f"strategy {i}: {m}" for i, m in failed)
        )


# -- export and import ---------------------------------------------------------------------------
@app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="YAML file to write ('-' for standard output).")],
    status: Annotated[
        list[str] | None, typer.Option("--status", help=f"Only these statuses: {', '.join(STATUSES)}.")
    ] = None,
    domain: DomainFilter = None,
    db: DbOption = None,
) -> None:
    """Write the library as YAML: stable order and formatting, so it diffs well in git."""
    from ..audit.exchange import dump_library, strategy_entry

    for st in status or []:
        if st not in STATUSES:
            raise AuditUsageError(f"--status: '{st}' is not one of {', '.join(STATUSES)}")
    store = open_store(db)
    rows = store.list_strategies(domain, status)
    versions = store.versions_by_strategy([r.id or 0 for r in rows])
    text = dump_library([strategy_entry(r, versions[r.id or 0]) for r in rows])
    if str(file) == "-":
        sys.stdout.write(text)
        return
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise StrategistError(f"{file}: cannot write: {exc.strerror or exc}") from None
    say(f"wrote {len(rows)} strategies to {file}")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A library YAML file (as written by export).")],
    reviewer: ReviewerOption = None,
    note: NoteOption = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Load a library file: validates all of it, shows what changes, applies it as reviewed actions."""
    from ..audit.exchange import plan_import, read_library
    from ..packs import find_pack
    from .common import load_pack

    lib, where = read_library(file)
    store = open_store(db, create=True)
    who = _reviewer(reviewer)
    in_db = {d.id for d in store.list_domains()}
    trail = f"imported from {file.name}" + (f": {note.strip()}" if note.strip() else "")
    plan = plan_import(
        lib,
        where,
        str(file),
        store.current_states(e.id for e in lib.strategies if e.id is not None),
        lambda d: d in in_db or find_pack(d) is not None,
        reviewer=who,
        note=trail,
    )
    for line in plan.changes:
        say(line)
    named = {e.id for e in lib.strategies}
    others = sum(1 for r in store.list_strategies() if r.id not in named)
    say(
        f"{len(plan.changes)} to change, {plan.unchanged} unchanged"
        + (f", {others} in the database but not in the file (left as they are)" if others else "")
    )
    if plan.empty or dry_run:
        if dry_run and not plan.empty:
            say("dry run: nothing was changed")
        return
    for d in sorted({n.domain for n in plan.creates} - in_db):
        load_pack(store, d)  # a shipped pack, loaded the way init does
    store.apply_import(plan.creates, plan.reviews, reviewer=who, note=trail)
    say(f"applied as {who}: {len(plan.creates)} new, {len(plan.changes) - len(plan.creates)} changed")
