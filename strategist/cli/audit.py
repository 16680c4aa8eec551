"""Review commands: approve, reject, retire, edit, history, export, import, check (on the
strategies group), and ``review`` and ``audit-ui`` on the root."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import StrategistError, one_line
from .common import DbOption, JsonOption, console, open_store, print_json, short, table
from .records import STATUSES, strategies_app

if TYPE_CHECKING:
    from ..audit.lifecycle import Action
    from ..models.base import ChatModel
    from ..store import Store
    from ..store.tables import StrategyRow


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


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app and to the strategies group."""
    for name, fn in (
        ("approve", approve),
        ("reject", reject),
        ("retire", retire),
        ("edit", edit),
        ("history", history),
        ("check", check),
        ("export", export),
        ("import", import_),
    ):
        strategies_app.command(name)(fn)
    app.command("review")(review)
    app.command("audit-ui")(audit_ui)


def _reviewer(value: str | None) -> str:
    from ..audit.lifecycle import default_reviewer

    return value.strip() if value and value.strip() else default_reviewer()


# -- showing a strategy ------------------------------------------------------------------------
def policy_lines(row: StrategyRow) -> list[str]:
    c = row.policy_check
    if not c:
        return [f"policy: not checked (run: strategist strategies check {row.id})"]
    stale = "" if c.get("version") == row.version else f" - checked version {c.get('version')}, not this one"
    who = f"(judge {c.get('model')}, {c.get('checked_at')}{stale})"
    if c.get("conflict"):
        return [f"policy: CONFLICT with: {c.get('clause')}", f"  {c.get('explanation')} {who}"]
    return [f"policy: no conflict found. {c.get('explanation')} {who}"]


def print_strategy(store: Store, row: StrategyRow, *, dialogues: int = 1) -> None:
    """Text, status, policy verdict, provenance, gate evidence and before/after dialogues."""
    from rich.markup import escape

    from ..audit.evidence import gate_line, pair_views, provenance_line
    from ..errors import NotFoundError

    head = f"[bold]strategy {row.id}[/] (domain {row.domain_id})"
    console.print(f"{head} status [bold]{row.status}[/] version {row.version}")
    for i, line in enumerate(policy_lines(row)):
        style = "bold red" if row.policy_check and row.policy_check.get("conflict") and i == 0 else ""
        console.print(f"[{style}]{escape(line)}[/]" if style else escape(line))
    console.print(f"[bold]when[/]: {escape(row.trigger)}")
    console.print(f"[bold]do[/]: {escape(row.guidance)}")
    if row.example:
        console.print(f"[bold]example[/]: {escape(row.example)}")
    p, e = row.provenance, row.evidence
    title = None
    if isinstance(p.get("scenario_id"), int):
        try:
            title = store.get_scenario(p["scenario_id"]).title
        except NotFoundError:
            title = None
    console.print("provenance: " + escape(provenance_line(p, title)))
    gate = gate_line(e)
    if gate:
        console.print("gate: " + gate)
        if e.get("regression_mean") is not None:
            console.print(f"regression set: mean change {e['regression_mean']:+.3f}")
    pairs = [x for x in e.get("pairs") or [] if isinstance(x, dict)]
    if pairs:
        table(
            "paired evidence",
            ["scenario", "seed", "without (dialogue)", "with (dialogue)", "delta", "set"],
            [
                (
                    x.get("scenario_id"),
                    x.get("seed"),
                    f"{x['without_score']:.3f} ({x.get('without_dialogue_id')})",
                    f"{x['with_score']:.3f} ({x.get('with_dialogue_id')})",
                    f"{x['delta']:+.3f}",
                    "regression" if x.get("regression") else "target",
                )
                for x in pairs
            ],
        )
    for pv in pair_views(store, e, limit=dialogues) if dialogues > 0 else []:
        _print_pair(pv)


def _print_pair(pv: Any) -> None:
    from rich.table import Table
    from rich.text import Text as RichText

    gain = "" if pv.delta is None else f", gain {pv.delta:+.3f}"
    t = Table(
        title=f'before/after: scenario {pv.scenario_id} "{pv.scenario_title}", seed {pv.seed}{gain}',
        title_justify="left",
        show_lines=True,
        expand=True,
    )
    t.add_column(f"without the strategy: {pv.without.title}", ratio=1)
    t.add_column(f"with the strategy: {pv.with_.title}", ratio=1)

    def cell(turn: tuple[str, str] | None) -> RichText:
        if turn is None:
            return RichText("")
        out = RichText(f"{turn[0]}: ", style="bold")
        out.append(turn[1])
        return out

    def missing(side: Any) -> RichText:
        return RichText(f"(dialogue {side.dialogue_id} is not in this database)", style="dim")

    if pv.without.missing or pv.with_.missing:
        t.add_row(
            missing(pv.without) if pv.without.missing else RichText(""),
            missing(pv.with_) if pv.with_.missing else RichText(""),
        )
    for left, right in zip_longest(pv.without.turns, pv.with_.turns):
        t.add_row(cell(left), cell(right))
    t.add_row(
        RichText("judge: " + (pv.without.critique or "-"), style="italic"),
        RichText("judge: " + (pv.with_.critique or "-"), style="italic"),
    )
    console.print(t)


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
    row = store.review(
        ReviewRequest(
            strategy_id,
            action,
            _reviewer(reviewer),
            note,
            seen_version=seen.version if version is None else version,
            seen_status=seen.status,
            text=text,
            approve=approve_too,
        )
    )
    console.print(f"strategy {row.id}: {seen.status} v{seen.version} -> {row.status} v{row.version}")
    return row


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

    chosen, skipped = [], []
    for r in store.list_strategies(domain, ["pending"]):
        gain = r.evidence.get("mean_delta")
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
    console.print(
        f"approved {len(chosen)} strategies" + (": " + ", ".join(str(r.id) for r in chosen) if chosen else "")
    )
    if skipped:
        table("left pending", ["id", "why"], skipped)


def reject(
    strategy_id: Annotated[int, typer.Argument(help="Strategy id.")],
    note: Annotated[str, typer.Option("--note", help="Why it is rejected (required).")] = "",
    version: VersionOption = None,
    reviewer: ReviewerOption = None,
    db: DbOption = None,
) -> None:
    """Reject a pending strategy; a note saying why is required."""
    _act(open_store(db), strategy_id, "reject", reviewer=reviewer, note=note, version=version)


def retire(
    strategy_id: Annotated[int, typer.Argument(help="Strategy id.")],
    note: Annotated[str, typer.Option("--note", help="Why it is retired (required).")] = "",
    version: VersionOption = None,
    reviewer: ReviewerOption = None,
    db: DbOption = None,
) -> None:
    """Take an approved strategy out of use; a note saying why is required."""
    _act(open_store(db), strategy_id, "retire", reviewer=reviewer, note=note, version=version)


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
            console.print("no changes; nothing saved")
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


def history(
    strategy_id: Annotated[int, typer.Argument(help="Strategy id.")],
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Every version of a strategy and every review action on it."""
    from rich.markup import escape

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
    console.print(f"[bold]strategy {row.id}[/]: now {row.status}, version {row.version}")
    for v in versions:
        console.print(f"[bold]version {v.version}[/] by {escape(v.author)}, {v.created_at:%Y-%m-%d %H:%M}")
        console.print(f"  when: {escape(v.trigger)}")
        console.print(f"  do: {escape(v.guidance)}")
        if v.example:
            console.print(f"  example: {escape(v.example)}")

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

    asyncio.run(go())
    return failed


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
    console.print(f"wrote {len(rows)} strategies to {file}")


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
    from rich.markup import escape

    from ..audit.exchange import plan_import, read_library
    from ..packs import find_pack
    from .common import resolve_domain

    lib, where = read_library(file)
    store = open_store(db)
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
        console.print(escape(line))
    named = {e.id for e in lib.strategies}
    others = sum(1 for r in store.list_strategies() if r.id not in named)
    console.print(
        f"{len(plan.changes)} to change, {plan.unchanged} unchanged"
        + (f", {others} in the database but not in the file (left as they are)" if others else "")
    )
    if plan.empty or dry_run:
        if dry_run and not plan.empty:
            console.print("dry run: nothing was changed")
        return
    for d in sorted({n.domain for n in plan.creates} - in_db):
        resolve_domain(store, d)  # a shipped pack, loaded the way init does
    store.apply_import(plan.creates, plan.reviews, reviewer=who, note=trail)
    console.print(
        f"applied as {who}: {len(plan.creates)} new, {len(plan.changes) - len(plan.creates)} changed"
    )


# -- the interactive queue -------------------------------------------------------------------------
def _read_key(prompt: str) -> str:
    """One key: a single keypress on a terminal, else the first letter of a line (pipes, tests)."""
    import click

    console.print(prompt, end="", markup=False, highlight=False)
    if sys.stdin.isatty():
        try:
            ch = click.getchar()
        except (KeyboardInterrupt, EOFError):
            return "q"
        console.print(ch, markup=False, highlight=False)
        return "q" if ch in ("\x03", "\x04") else ch.lower()
    line = sys.stdin.readline()
    if not line:  # end of input
        console.print()
        return "q"
    return line.strip()[:1].lower()


def _read_line(prompt: str) -> str | None:
    console.print(prompt, end="", markup=False, highlight=False)
    line = sys.stdin.readline()
    return None if not line else line.strip()


def review(
    domain: DomainFilter = None,
    reviewer: ReviewerOption = None,
    judge: JudgeOption = None,
    dialogues: Annotated[
        int, typer.Option(min=0, help="Before/after dialogue pairs shown per strategy.")
    ] = 1,
    db: DbOption = None,
) -> None:
    """Go through the pending strategies one by one: approve, reject, edit, check policy, skip, quit."""
    import click

    from ..audit.forms import edit_form, parse_edit_form
    from ..audit.lifecycle import ConflictError, ReviewRequest, Text, TransitionError
    from ..errors import InputError

    store = open_store(db)
    who = _reviewer(reviewer)
    queue = [r.id or 0 for r in store.list_strategies(domain, ["pending"])]
    if not queue:
        console.print("no pending strategies: nothing to review")
        return
    done: Counter[str] = Counter()
    keys = "[a]pprove  [r]eject  [e]dit  [c]heck policy  [s]kip  [q]uit > "
    i = 0
    while i < len(queue):
        row = store.get_strategy(queue[i])
        if row.status != "pending":
            console.print(f"strategy {row.id} is {row.status} now (someone else reviewed it); next")
            i += 1
            continue
        console.rule(f"pending {i + 1} of {len(queue)}: strategy {row.id}")
        print_strategy(store, row, dialogues=dialogues)
        key = _read_key(keys)
        if key == "q":
            break
        if key == "s":
            done["skipped"] += 1
            i += 1
            continue
        sid, v, st = row.id or 0, row.version, row.status
        try:
            if key == "a":
                note = _read_line("note (optional): ")
                if note is None:
                    break
                store.review(ReviewRequest(sid, "approve", who, note, seen_version=v, seen_status=st))
                console.print(f"approved strategy {sid}")
                done["approved"] += 1
            elif key == "r":
                note = ""
                while not note:
                    got = _read_line("why reject it? (required): ")
                    if got is None:
                        break
                    note = got
                if not note:
                    break
                store.review(ReviewRequest(sid, "reject", who, note, seen_version=v, seen_status=st))
                console.print(f"rejected strategy {sid}")
                done["rejected"] += 1
            elif key == "e":
                current = Text(row.trigger, row.guidance, row.example)
                edited = click.edit(edit_form(sid, row.version, row.status, current), extension=".yaml")
                form = parse_edit_form(edited) if edited is not None else None
                if form is None or not form.text.changed_fields(current):
                    console.print("no changes; nothing saved")
                    continue
                also = _read_key("approve the new version now? [y/N] ") == "y"
                new = store.review(
                    ReviewRequest(
                        sid,
                        "edit",
                        who,
                        form.note,
                        seen_version=v,
                        seen_status=st,
                        text=form.text,
                        approve=also,
                    )
                )
                console.print(f"strategy {sid}: saved version {new.version}, {new.status}")
                done["edited"] += 1
            elif key == "c":
                try:
                    failed = run_policy_checks(store, [row], _judge_model(judge))
                except StrategistError as exc:  # e.g. the judge model cannot be loaded: keep reviewing
                    failed = [(sid, one_line(exc))]
                for _, message in failed:
                    console.print(f"policy check failed: {message}", markup=False)
                continue  # show the same strategy again, now with its verdict
            else:
                console.print("press a, r, e, c, s or q")
                continue
        except (ConflictError, TransitionError, InputError) as exc:
            console.print(f"not saved: {one_line(exc)}", style="red", markup=False)
        i += 1
    summary = ", ".join(f"{k} {done[k]}" for k in ("approved", "rejected", "edited", "skipped"))
    console.print(f"reviewed as {who}: {summary}")


# -- the web page ----------------------------------------------------------------------------------
def audit_ui(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; keep 127.0.0.1 unless you must.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8765,
    reviewer: ReviewerOption = None,
    db: DbOption = None,
) -> None:
    """Serve the audit page on this machine; open the address it prints (it carries an access token)."""
    import secrets

    import uvicorn

    from ..audit_ui.app import create_app

    store = open_store(db)
    token = secrets.token_urlsafe(24)
    app = create_app(store, token=token, reviewer=_reviewer(reviewer))
    shown = f"[{host}]" if ":" in host else host
    console.print(f"audit page: http://{shown}:{port}/?token={token}", markup=False, highlight=False)
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"warning: listening on {host}: anyone who can reach it and has the token can approve strategies"
        )
    console.print("stop with Ctrl-C")
    uvicorn.run(app, host=host, port=port, log_level="warning")
