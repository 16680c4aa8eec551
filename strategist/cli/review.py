"""``strategist review`` (the pending strategies one by one, a key per action) and
``strategist audit-ui`` (the same review as a local web page)."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Annotated

import typer

from ..errors import StrategistError, one_line
from .common import DbOption, console, open_store
from .strategies import DomainFilter, JudgeOption, ReviewerOption, _judge_model, _reviewer, run_policy_checks
from .views import print_strategy, say


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
    dialogues: Annotated[int, typer.Option(min=0, help="Before/after dialogue pairs the d key shows.")] = 1,
    db: DbOption = None,
) -> None:
    """Go through the pending strategies one by one: approve, reject, edit, check policy, skip, quit.

    Each strategy is shown with its gate result first; d shows its paired evidence and the
    before/after dialogues."""
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
    keys = "[a]pprove  [r]eject  [e]dit  [c]heck policy  [d]ialogues  [s]kip  [q]uit > "
    i = 0
    while i < len(queue):
        row = store.get_strategy(queue[i])
        if row.status != "pending":
            say(f"strategy {row.id} is {row.status} now (someone else reviewed it); next")
            i += 1
            continue
        console.rule(f"pending {i + 1} of {len(queue)}: strategy {row.id}")
        # The words and the gate's verdict fit one screen; the dialogues (dozens of lines) wait for d.
        print_strategy(store, row, dialogues=0, pairs_table=False)
        key = _read_key(keys)
        while key == "d":
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
                say(f"approved strategy {sid}")
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
                say(f"rejected strategy {sid}")
                done["rejected"] += 1
            elif key == "e":
                current = Text(row.trigger, row.guidance, row.example)
                edited = click.edit(edit_form(sid, row.version, row.status, current), extension=".yaml")
                form = parse_edit_form(edited) if edited is not None else None
                if form is None or not form.text.changed_fields(current):
                    say("no changes; nothing saved")
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
                say(f"strategy {sid}: saved version {new.version}, {new.status}")
                done["edited"] += 1
            elif key == "c":
                try:
                    failed = run_policy_checks(store, [row], _judge_model(judge))
                except StrategistError as exc:  # e.g. the judge model cannot be loaded: keep reviewing
                    failed = [(sid, one_line(exc))]
                for _, message in failed:
                    say(f"policy check failed: {message}")
                continue  # show the same strategy again, now with its verdict
            else:
                say("press a, r, e, c, d, s or q")
                continue
        except (ConflictError, TransitionError, InputError) as exc:
            say(f"not saved: {one_line(exc)}", style="red")
        i += 1
    summary = ", ".join(f"{k} {done[k]}" for k in ("approved", "rejected", "edited", "skipped"))
    say(f"reviewed as {who}: {summary}")


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
