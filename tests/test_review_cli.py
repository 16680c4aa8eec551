"""The review commands through CliRunner: single actions, bulk approval, the interactive queue,
the policy check with a scripted judge, and export/import of the library file."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from auditkit import add, grow_one, policy_judge
from typer.testing import CliRunner

from strategist.cli import app
from strategist.store import Store

runner = CliRunner()


def run(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # wide tables: a cell's words stay on one line
    for var in ("STRATEGIST_DB", "STRATEGIST_CONFIG", "STRATEGIST_JUDGE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def db(cwd, northwind):
    """lib.db with one grown pending strategy (id 1) that has real paired dialogues."""
    store = Store.open(cwd / "lib.db")
    domain = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(domain)
    grow_one(store, domain)
    store.close()
    return "lib.db"


@pytest.fixture
def judge(register_scripted):
    return register_scripted("scripted/policy", policy_judge())


def status_of(cwd, sid: int) -> tuple[str, int]:
    return (
        sqlite3.connect(cwd / "lib.db")
        .execute("select status, version from strategies where id=?", (sid,))
        .fetchone()
    )


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


# -- single actions --------------------------------------------------------------------------------
def test_approve_with_a_note_then_history(cwd, db):
    result = run("strategies", "approve", "1", "--note", "matches rule 4", "--reviewer", "alice", "--db", db)
    assert result.exit_code == 0, result.output
    assert "strategy 1: pending v1 -> approved v1" in result.stdout
    assert status_of(cwd, 1) == ("approved", 1)
    shown = run("strategies", "history", "1", "--db", db)
    assert shown.exit_code == 0
    assert (
        "alice" in shown.stdout and "matches rule 4" in shown.stdout and "pending -> approved" in shown.stdout
    )
    assert "version 1 by gate" in shown.stdout
    trail = json.loads(run("strategies", "history", "1", "--db", db, "--json").stdout)
    assert [(r["action"], r["reviewer"]) for r in trail["reviews"]] == [
        ("created", "gate"),
        ("approved", "alice"),
    ]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_reviewer_defaults_to_git_user_name_then_user(cwd, db, monkeypatch):
    gitconfig = cwd / "gitconfig"
    gitconfig.write_text("[user]\n\tname = Tess Tester\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("USER", "tess")
    assert run("strategies", "approve", "1", "--db", db).exit_code == 0
    gitconfig.write_text("")
    add_id = _add(cwd)
    assert run("strategies", "approve", str(add_id), "--db", db).exit_code == 0
    trail = [
        json.loads(run("strategies", "history", str(i), "--db", db, "--json").stdout) for i in (1, add_id)
    ]
    assert trail[0]["reviews"][-1]["reviewer"] == "Tess Tester"
    assert trail[1]["reviews"][-1]["reviewer"] == "tess"


def _add(cwd, **kw) -> int:
    store = Store.open(cwd / "lib.db")
    try:
        return add(store, **kw).id
    finally:
        store.close()


def test_reject_needs_a_note(cwd, db):
    err = one_line_error(run("strategies", "reject", "1", "--db", db))
    assert "note is required to reject" in err
    assert status_of(cwd, 1) == ("pending", 1)
    ok = run("strategies", "reject", "1", "--note", "too specific", "--db", db)
    assert ok.exit_code == 0 and status_of(cwd, 1) == ("rejected", 1)


def test_retire_only_from_approved(cwd, db):
    assert "only approved strategies can be retired" in one_line_error(
        run("strategies", "retire", "1", "--note", "old", "--db", db)
    )
    run("strategies", "approve", "1", "--db", db)
    assert run("strategies", "retire", "1", "--note", "policy changed", "--db", db).exit_code == 0
    assert status_of(cwd, 1) == ("retired", 1)


def test_an_action_on_a_version_that_moved_on_is_a_conflict(cwd, db):
    run("strategies", "edit", "1", "--example", "Store credit it is.", "--reviewer", "bob", "--db", db)
    err = one_line_error(run("strategies", "approve", "1", "--version", "1", "--db", db))
    assert "changed since you looked at it: you saw version 1" in err and "edited by bob" in err
    assert status_of(cwd, 1) == ("pending", 2)


def test_unknown_strategy_and_bad_combinations(cwd, db):
    assert "no strategy 9" in one_line_error(run("strategies", "approve", "9", "--db", db))
    assert "give a strategy id" in one_line_error(run("strategies", "approve", "--db", db))
    assert "takes no strategy id" in one_line_error(
        run("strategies", "approve", "1", "--all-pending", "--db", db)
    )


def test_edit_with_flags_sends_approved_back_to_pending_unless_approved_too(cwd, db):
    run("strategies", "approve", "1", "--db", db)
    result = run(
        "strategies", "edit", "1", "--guidance", "Explain rule 4 and offer store credit.", "--db", db
    )
    assert result.exit_code == 0 and "approved v1 -> pending v2" in result.stdout
    result = run(
        "strategies", "edit", "1", "--example", "Store credit?", "--approve", "--note", "ok", "--db", db
    )
    assert "pending v2 -> approved v3" in result.stdout
    versions = json.loads(run("strategies", "show", "1", "--db", db, "--json").stdout)["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert versions[0]["guidance"].startswith("Explain the 31-60 day rule")  # old words kept
    assert "must not be empty" in one_line_error(run("strategies", "edit", "1", "--trigger", " ", "--db", db))


EDITOR_SCRIPT = textwrap.dedent(
    """
    import sys
    path = sys.argv[1]
    text = open(path).read()
    text = text.replace("instead of a refund to the card", "(rule 4), never a card refund")
    text = text.replace("note: ''", "note: clearer rule")
    open(path, "w").write(text)
    """
)


@pytest.fixture
def editor(cwd, monkeypatch):
    script = cwd / "edit.py"
    script.write_text(EDITOR_SCRIPT)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    monkeypatch.delenv("VISUAL", raising=False)


def test_edit_in_the_editor(cwd, db, editor):
    result = run("strategies", "edit", "1", "--reviewer", "bob", "--db", db)
    assert result.exit_code == 0, result.output
    assert status_of(cwd, 1) == ("pending", 2)
    d = json.loads(run("strategies", "show", "1", "--db", db, "--json").stdout)
    assert d["guidance"].endswith("(rule 4), never a card refund.")
    assert (d["reviews"][-1]["note"], d["reviews"][-1]["reviewer"]) == ("clearer rule", "bob")


def test_edit_in_the_editor_with_no_change_saves_nothing(cwd, db, monkeypatch):
    monkeypatch.setenv("EDITOR", "true")
    result = run("strategies", "edit", "1", "--db", db)
    assert result.exit_code == 0 and "nothing saved" in result.stdout
    assert status_of(cwd, 1) == ("pending", 1)


# -- bulk --------------------------------------------------------------------------------------------
def test_bulk_approve_respects_min_delta_and_policy_flags(cwd, db):
    low = _add(cwd, gain=0.05)
    flagged = _add(cwd, text={"trigger": "When a customer is angry", "guidance": "Promise everything."})
    store = Store.open(cwd / "lib.db")
    store.set_policy_check(flagged, {"conflict": True, "clause": "19. no exceptions", "version": 1})
    store.close()
    result = run(
        "strategies", "approve", "--all-pending", "--min-delta", "0.1", "--note", "batch", "--db", db
    )
    assert result.exit_code == 0, result.output
    assert "approved 1 strategies: 1" in result.stdout
    assert "gain +0.050 < +0.100" in result.stdout and "policy conflict" in result.stdout
    assert [status_of(cwd, i)[0] for i in (1, low, flagged)] == ["approved", "pending", "pending"]
    run("strategies", "approve", "--all-pending", "--include-flagged", "--db", db)
    assert [status_of(cwd, i)[0] for i in (low, flagged)] == ["approved", "approved"]


# -- the interactive queue ---------------------------------------------------------------------------------
def test_review_queue_approve_reject_skip(cwd, db):
    second, third = _add(cwd), _add(cwd, text={"trigger": "When x", "guidance": "Do y."})
    keys = "d\na\nlooks right\nr\n\nnot specific enough\ns\n"
    result = run("review", "--db", db, "--reviewer", "maria", input=keys)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "pending 1 of 3: strategy 1" in out and "before/after" in out  # d showed the evidence
    assert "approved strategy 1" in out and f"rejected strategy {second}" in out
    assert "reviewed as maria: approved 1, rejected 1, edited 0, skipped 1" in out
    assert [status_of(cwd, i)[0] for i in (1, second, third)] == ["approved", "rejected", "pending"]
    trail = json.loads(run("strategies", "history", str(second), "--db", db, "--json").stdout)["reviews"]
    assert (trail[-1]["reviewer"], trail[-1]["note"]) == ("maria", "not specific enough")


def test_review_queue_quits_on_q_and_at_end_of_input(cwd, db):
    result = run("review", "--db", db, input="q\n")
    assert result.exit_code == 0 and "approved 0" in result.stdout
    assert run("review", "--db", db, input="").exit_code == 0
    assert status_of(cwd, 1) == ("pending", 1)


def test_review_queue_edit_and_approve(cwd, db, editor):
    result = run("review", "--db", db, "--reviewer", "sam", input="e\ny\n")
    assert result.exit_code == 0, result.output
    assert "saved version 2, approved" in result.stdout
    assert status_of(cwd, 1) == ("approved", 2)


def test_review_queue_can_run_the_policy_check(cwd, db, judge):
    flagged = _add(cwd, text={"trigger": "When angry", "guidance": "Promise PROMISE-EVERYTHING."})
    result = run("review", "--db", db, "--judge", judge, input="s\nc\nr\nbreaks rule 19\n")
    assert result.exit_code == 0, result.output
    assert "policy: CONFLICT with: 19. You may not grant exceptions" in result.stdout
    assert status_of(cwd, flagged)[0] == "rejected"


def test_review_with_nothing_pending(cwd, db):
    run("strategies", "approve", "1", "--db", db)
    assert "nothing to review" in run("review", "--db", db).stdout


# -- showing and the policy check --------------------------------------------------------------------
def test_show_puts_the_dialogues_side_by_side_with_critiques(cwd, db):
    out = run("strategies", "show", "1", "--db", db).stdout
    assert "before/after: scenario 1" in out
    assert "without the strategy" in out and "with the strategy" in out
    assert "judge: Offered store credit." in out and "judge: Did not offer store credit" in out
    assert "provenance: run 1, round 1, scenario 1" in out and "teacher scripted/teacher" in out
    assert "policy: not checked" in out
    assert "before/after" not in run("strategies", "show", "1", "--dialogues", "0", "--db", db).stdout


def test_policy_check_flags_conflicts_in_list_and_show(cwd, db, judge):
    flagged = _add(cwd, text={"trigger": "When angry", "guidance": "Promise PROMISE-EVERYTHING."})
    result = run("strategies", "check", "--all", "--judge", judge, "--db", db)
    assert result.exit_code == 0, result.output
    listed = {r["id"]: r for r in json.loads(run("strategies", "list", "--db", db, "--json").stdout)}
    assert listed[flagged]["policy_check"]["conflict"] is True
    assert listed[flagged]["policy_check"]["model"] == "scripted/policy"
    assert listed[1]["policy_check"]["conflict"] is False
    table = run("strategies", "list", "--db", db).stdout
    assert "CONFLICT" in table and "ok" in table
    only = json.loads(run("strategies", "list", "--flagged", "--db", db, "--json").stdout)
    assert [r["id"] for r in only] == [flagged]
    shown = run("strategies", "show", str(flagged), "--db", db).stdout
    assert "policy: CONFLICT with: 19. You may not grant exceptions" in shown
    # The judge's calls are in the ledger like any other model call.
    calls = sqlite3.connect(cwd / "lib.db").execute(
        "select count(*) from llm_calls where model='scripted/policy'"
    )
    assert calls.fetchone()[0] == 2


def test_check_needs_an_id_or_all(cwd, db, judge):
    assert "give a strategy id or --all" in one_line_error(run("strategies", "check", "--db", db))
    assert run("strategies", "check", "1", "--judge", judge, "--db", db).exit_code == 0


# -- export and import ---------------------------------------------------------------------------------
def test_export_import_export_through_the_cli(cwd, db):
    run("strategies", "approve", "1", "--note", "ok", "--db", db)
    assert run("strategies", "export", "a.yaml", "--db", db).exit_code == 0
    imported = run("strategies", "import", "a.yaml", "--db", "other.db", "--reviewer", "carol")
    assert imported.exit_code == 0, imported.output
    assert "+ new strategy 1 in northwind: approved" in imported.stdout
    assert "applied as carol: 1 new, 0 changed" in imported.stdout
    assert run("strategies", "export", "b.yaml", "--db", "other.db").exit_code == 0
    assert (cwd / "a.yaml").read_bytes() == (cwd / "b.yaml").read_bytes()
    assert run("strategies", "export", "-", "--db", db).stdout == (cwd / "a.yaml").read_text()
    again = run("strategies", "import", "a.yaml", "--db", "other.db")
    assert "0 to change, 1 unchanged" in again.stdout


def test_import_dry_run_changes_nothing(cwd, db):
    run("strategies", "export", "a.yaml", "--db", db)
    text = (cwd / "a.yaml").read_text().replace("status: pending", "status: approved")
    (cwd / "a.yaml").write_text(text)
    result = run("strategies", "import", "a.yaml", "--dry-run", "--db", db)
    assert "~ strategy 1: pending -> approved" in result.stdout and "dry run" in result.stdout
    assert status_of(cwd, 1) == ("pending", 1)


def test_malformed_import_is_one_line_with_line_and_field(cwd, db):
    run("strategies", "export", "a.yaml", "--db", db)
    text = (cwd / "a.yaml").read_text()
    (cwd / "bad.yaml").write_text(text.replace("status: pending", "status: maybe"))
    line = text[: text.index("status: pending")].count("\n") + 1
    err = one_line_error(run("strategies", "import", "bad.yaml", "--db", db))
    assert f"bad.yaml: line {line}: strategies[0].status: Input should be" in err
    assert status_of(cwd, 1) == ("pending", 1)
    assert "file not found" in one_line_error(run("strategies", "import", "missing.yaml", "--db", db))


def test_export_rejects_unknown_status(cwd, db):
    assert "'done' is not one of" in one_line_error(
        run("strategies", "export", "a.yaml", "--status", "done", "--db", db)
    )


def test_new_commands_are_listed_and_help_stays_light():
    top = run("--help").stdout
    assert "review" in top and "audit-ui" in top
    sub = run("strategies", "--help").stdout
    for name in ("approve", "reject", "retire", "edit", "history", "check", "export", "import"):
        assert name in sub
    code = (
        "import sys; from typer.testing import CliRunner; from strategist.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'playwright') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
