"""First steps with strategist, end to end, each test named after what it covers: an imported
library reviewed, eval runs listed and shown, brackets in stored text, a customised domain kept,
mistyped and broken databases, stale library files, scenarios imported twice, narrow terminals,
help texts, oversized packs, review conflicts, the grow estimate and the call ledger after a
kill -9. They run the command line (or the audit page) the way a user does."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import world
from auditkit import grow_one
from typer.testing import CliRunner

from strategist.cli import app
from strategist.models import FunctionModel, register_model, unregister_model
from strategist.store import Store

ROOT = Path(__file__).resolve().parent.parent
NORTHWIND = ROOT / "scenarios" / "northwind"
EXAMPLE_LIBRARY = ROOT / "strategies" / "northwind-example.yaml"
ROLES = ("teacher", "student", "customer", "judge")
runner = CliRunner()


def run(*args: str, input: str | None = None):
    """The command line; a crash is a result (exit code and exception), not a test error."""
    return runner.invoke(app, [str(a) for a in args], input=input)


def clean(result) -> None:
    """Assert a command succeeded, showing what it printed (and any traceback) if not."""
    assert result.exit_code == 0, (result.output, result.exception)


def one_line_error(result, *needles: str) -> str:
    """A failed command's single ``error:`` line on stderr (no traceback), containing ``needles``."""
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    for var in ("STRATEGIST_DB", "STRATEGIST_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    for r in ROLES:  # never the embedded model, even where a test forgets a flag
        monkeypatch.setenv(f"STRATEGIST_{r.upper()}_MODEL", f"scripted/{r}")
    return tmp_path


@pytest.fixture
def scripted():
    """The scripted world's models under model names, as flags for grow (and eval)."""
    fns = {
        "teacher": world.Teacher(world.HELPFUL),
        "student": world.student_fn,
        "customer": world.Customer(),
        "judge": world.judge_fn,
    }
    for role, fn in fns.items():
        register_model(
            f"scripted/{role}", lambda fn=fn, role=role: FunctionModel(fn, name=f"scripted/{role}")
        )
    yield [f"--{r}=scripted/{r}" for r in ROLES]
    for role in ROLES:
        unregister_model(f"scripted/{role}")


@pytest.fixture
def grown(cwd, northwind):
    """lib.db: the Northwind domain (2 turns a dialogue) and one grown pending strategy (id 1)
    with real paired dialogues and gate evidence."""
    store = Store.open(cwd / "lib.db")
    domain = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(domain)
    grow_one(store, domain)
    store.close()
    return cwd / "lib.db"


def audit_client(store: Store):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from strategist.audit_ui.app import COOKIE, create_app

    client = TestClient(create_app(store, token="t0ken", reviewer="web"))
    client.cookies.set(COOKIE, "t0ken")
    return client


# -- 1. imported strategies can be reviewed ------------------------------------------------------
def test_1_imported_example_library_can_be_shown_reviewed_and_audited(cwd):
    clean(run("init", "--db", "a.db"))
    clean(run("strategies", "import", EXAMPLE_LIBRARY, "--db", "a.db", "--reviewer", "importer"))
    shown = run("strategies", "show", "1", "--db", "a.db")
    clean(shown)
    assert "strategy 1" in shown.stdout and "gate:" in shown.stdout
    queue = run("review", "--db", "a.db", "--reviewer", "ana", input="s\nq\n")
    clean(queue)
    assert "skipped 1" in queue.stdout
    store = Store.open(cwd / "a.db")
    try:
        page = audit_client(store).get("/strategies/1")
        assert page.status_code == 200, page.text
        assert "mean paired gain" in page.text
    finally:
        store.close()


def test_1_grown_library_round_trips_through_export_and_import(grown, cwd):
    clean(run("strategies", "export", "lib.yaml", "--db", "lib.db"))
    clean(run("init", "--db", "copy.db"))
    clean(run("strategies", "import", "lib.yaml", "--db", "copy.db", "--reviewer", "importer"))
    shown = run("strategies", "show", "1", "--db", "copy.db")
    clean(shown)
    assert "gate: mean paired gain" in shown.stdout
    # The dialogues stayed in the first database: the copy says so instead of crashing.
    assert "is not in this database" in shown.stdout
    clean(run("strategies", "export", "again.yaml", "--db", "copy.db"))
    assert (cwd / "again.yaml").read_text() == (cwd / "lib.yaml").read_text()
    store = Store.open(cwd / "copy.db")
    try:
        assert audit_client(store).get("/strategies/1").status_code == 200
    finally:
        store.close()


# -- 2. eval runs in runs show / runs list -------------------------------------------------------
@pytest.fixture
def evaluated(grown, scripted):
    """lib.db after a grow (run 1) and an eval of two held-out scenarios (run 2)."""
    from auditkit import scenario

    store = Store.open(grown)
    domain = store.get_domain("northwind")
    for i in range(2):
        store.add_scenario(scenario(domain, title=f"held out {i}", split="test"))
    con = sqlite3.connect(grown)
    con.execute("update strategies set status = 'approved'")
    con.commit()
    con.close()
    store.close()
    flags = [f for f in scripted if not f.startswith("--teacher")]
    clean(run("eval", "--db", "lib.db", "--samples", "2", "--max-turns", "2", *flags))
    return grown


def test_2_runs_show_on_an_eval_run(evaluated):
    shown = run("runs", "show", "2", "--db", "lib.db")
    clean(shown)
    assert "run 2: eval" in shown.stdout
    assert "library - no strategies" in shown.stdout  # the evaluation's own summary
    as_json = run("runs", "show", "2", "--db", "lib.db", "--json")
    clean(as_json)
    assert json.loads(as_json.stdout)["command"] == "eval"


def test_2_runs_list_says_grow_or_eval(evaluated):
    listed = run("runs", "list", "--db", "lib.db")
    clean(listed)
    lines = listed.stdout.splitlines()
    header = next(line for line in lines if "status" in line and "domain" in line)
    assert "command" in header
    rows = {
        cells[0]: cells
        for line in lines
        if line.startswith("│")
        for cells in [[c.strip() for c in line.strip("│").split("│")]]
    }
    assert "grow" in rows["1"] and "eval" in rows["2"] and "grow" not in rows["2"]


# -- 3. square brackets in stored text are text ----------------------------------------------------
TRIGGER = "Refund asked with [/INST] [/] [bold]x[/bold]"
TITLE = "Late refund [/INST] [/] [bold]x[/bold]"
NOTE = "fine [/] and [bold]x[/bold]"
REVIEWER = "[/INST]bob"
EVENT = "401 Unauthorized: Bearer [redacted]"


@pytest.fixture
def brackets(grown):
    """lib.db whose strategy 1 has a trigger, review note and reviewer full of brackets, with a
    scenario titled likewise and an event of run 1 holding a redacted key."""
    from auditkit import scenario

    from strategist.audit.lifecycle import ReviewRequest, Text

    store = Store.open(grown)
    row = store.get_strategy(1)
    store.review(
        ReviewRequest(1, "edit", REVIEWER, NOTE, text=Text(TRIGGER, row.guidance, row.example), approve=True)
    )
    store.add_scenario(scenario(store.get_domain("northwind"), title=TITLE))
    store.record_event(1, "failure", EVENT, round=1)
    store.close()
    return grown


def literal(result, *texts: str) -> None:
    clean(result)
    for t in texts:
        assert t in result.stdout, result.stdout


def test_3_brackets_in_strategies_list(brackets):
    literal(run("strategies", "list", "--db", "lib.db"), TRIGGER)


def test_3_brackets_in_scenarios_list(brackets):
    literal(run("scenarios", "list", "--db", "lib.db"), TITLE)


def test_3_brackets_in_retrieve(brackets):
    literal(run("retrieve", "refund [/INST] asked", "--db", "lib.db"), TRIGGER)


def test_3_brackets_in_strategies_history(brackets):
    literal(run("strategies", "history", "1", "--db", "lib.db"), TRIGGER, NOTE, REVIEWER)


def test_3_brackets_in_runs_show(brackets):
    shown = run("runs", "show", "1", "--db", "lib.db")
    literal(shown, EVENT)
    assert "[failure]" in shown.stdout


# -- 4. a customised domain is not overwritten by the shipped pack ---------------------------------
POLICY_30 = "within 30 days of the delivery date"
POLICY_90 = "within 90 days of the delivery date"


def stored_policy(db: Path) -> str:
    store = Store.open(db)
    try:
        return store.get_domain("northwind").policy
    finally:
        store.close()


@pytest.fixture
def custom(cwd):
    """lib.db initialised with the shipped pack, then nw90.yaml (the same domain id, a 90-day
    refund window) added over it."""
    clean(run("init", "--db", "lib.db"))
    pack = (NORTHWIND / "domain.yaml").read_text()
    assert POLICY_30 in pack
    (cwd / "nw90.yaml").write_text(pack.replace(POLICY_30, POLICY_90))
    clean(run("domains", "add", "nw90.yaml", "--db", "lib.db"))
    assert POLICY_90 in stored_policy(cwd / "lib.db")
    return cwd


def test_4_customised_domain_survives_retrieve_list_and_grow(custom, scripted):
    db = custom / "lib.db"
    clean(run("retrieve", "refund", "--db", "lib.db"))
    assert POLICY_90 in stored_policy(db)
    clean(run("scenarios", "list", "--db", "lib.db"))
    assert POLICY_90 in stored_policy(db)
    grow = ("grow", "--db", "lib.db", "--scenarios", "1", "--generate", "0", "--samples", "1")
    clean(run(*grow, "--variants", "0", "--regression", "0", "--max-turns", "1", *scripted))
    assert POLICY_90 in stored_policy(db)
    assert POLICY_30 not in stored_policy(db)


def test_4_a_pack_changed_since_it_was_loaded_is_noted_not_applied(custom):
    pack = custom / "nw90.yaml"
    pack.write_text(pack.read_text().replace(POLICY_90, "within 120 days of the delivery date"))
    result = run("retrieve", "refund", "--db", "lib.db")
    clean(result)
    assert "nw90.yaml has changed since domain 'northwind' was loaded" in " ".join(result.stderr.split())
    assert POLICY_90 in stored_policy(custom / "lib.db")


def test_4_domains_add_refuses_a_pack_that_drops_a_used_intent(custom):
    pack = (custom / "nw90.yaml").read_text()
    dropped = pack.replace(
        "  - id: refund_late_return\n    description: Wants a cash refund for an item returned after the "
        "30-day refund window has closed.\n",
        "",
    )
    assert dropped != pack
    (custom / "fewer.yaml").write_text(dropped.replace(POLICY_90, "within 10 days of the delivery date"))
    before = sqlite3.connect(custom / "lib.db").execute("select * from domains").fetchall()
    result = run("domains", "add", "fewer.yaml", "--db", "lib.db")
    one_line_error(result, "fewer.yaml", "refund_late_return")
    assert sqlite3.connect(custom / "lib.db").execute("select * from domains").fetchall() == before


# -- 6. a mistyped --db on a read-only command -----------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ("retrieve", "refund"),
        ("strategies", "list"),
        ("scenarios", "list"),
        ("runs", "list"),
        ("strategies", "export", "out.yaml"),
        ("eval", "--samples", "1"),
    ],
    ids=lambda c: "-".join(c[:2]),
)
def test_6_mistyped_db_on_a_read_only_command(cwd, scripted, command):
    result = run(*command, "--db", "libary.db")
    one_line_error(result, "libary.db")
    assert sorted(p.name for p in cwd.iterdir()) == []


# -- 7. a stale library file does not overwrite a newer review --------------------------------------
def test_7_stale_import_is_a_conflict_naming_the_reviewer(grown, cwd):
    clean(run("strategies", "export", "lib.yaml", "--db", "lib.db"))
    clean(run("strategies", "approve", "1", "--reviewer", "alice", "--db", "lib.db"))
    old = (cwd / "lib.yaml").read_text()
    assert "Explain the 31-60 day rule" in old
    (cwd / "lib.yaml").write_text(old.replace("Explain the 31-60 day rule", "Explain the return rule", 1))
    con = sqlite3.connect(grown)
    before = [
        con.execute(f"select * from {t}").fetchall() for t in ("strategies", "strategy_versions", "reviews")
    ]
    con.close()
    result = run("strategies", "import", "lib.yaml", "--db", "lib.db", "--reviewer", "bob")
    one_line_error(result, "strategy 1 changed since the file was exported", "alice", "nothing was changed")
    con = sqlite3.connect(grown)
    after = [
        con.execute(f"select * from {t}").fetchall() for t in ("strategies", "strategy_versions", "reviews")
    ]
    assert after == before


# -- 8. importing scenarios twice --------------------------------------------------------------------
def scenario_count(db: Path) -> int:
    return sqlite3.connect(db).execute("select count(*) from scenarios").fetchone()[0]


def test_8_importing_the_shipped_scenarios_again_adds_none(cwd):
    clean(run("init", "--db", "lib.db"))
    assert scenario_count(cwd / "lib.db") == 14
    result = run("scenarios", "import", NORTHWIND / "scenarios.yaml", "--db", "lib.db")
    clean(result)
    assert "imported 0 scenarios" in result.stdout and "skipped 14" in result.stdout
    assert scenario_count(cwd / "lib.db") == 14


def test_8_the_same_scenario_twice_in_one_file_is_added_once(cwd):
    import yaml

    clean(run("init", "--db", "lib.db"))
    data = yaml.safe_load((NORTHWIND / "scenarios.yaml").read_text())
    new = {**data["scenarios"][0], "title": "A brand-new scenario"}
    (cwd / "twice.yaml").write_text(yaml.safe_dump({"domain": "northwind", "scenarios": [new, new]}))
    result = run("scenarios", "import", "twice.yaml", "--db", "lib.db")
    clean(result)
    assert "imported 1 scenarios" in result.stdout
    assert scenario_count(cwd / "lib.db") == 15


# -- 10. database errors are one line naming the file -------------------------------------------------
def checkpointed(db: Path) -> None:
    """Fold the write-ahead log into the file, so the file alone is the database."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


def make_read_only(paths: list[Path]):
    """Make files and folders read-only for this process, root included: the immutable attribute
    when running as root (root ignores permission bits), else chmod. Returns the undo."""
    import os
    import subprocess

    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root, where chmod does not stop writes, and chattr is missing")
        done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"running as root and chattr +i is not allowed here: {done.stderr.strip()}")
        return lambda: subprocess.run(["chattr", "-i", *map(str, paths)], check=True)
    modes = {p: p.stat().st_mode for p in paths}
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)

    def undo() -> None:
        for p, mode in modes.items():
            p.chmod(mode)

    return undo


def test_10_read_only_database_file_on_a_write_command(grown):
    checkpointed(grown)
    undo = make_read_only([grown])
    try:
        result = run("strategies", "approve", "1", "--reviewer", "ana", "--db", "lib.db")
    finally:
        undo()
    one_line_error(result, "lib.db", "read-only")
    assert sqlite3.connect(grown).execute("select status from strategies").fetchone() == ("pending",)


def test_10_read_only_database_file_and_folder_on_a_write_command(grown):
    checkpointed(grown)
    undo = make_read_only([grown, grown.parent])
    try:
        result = run("strategies", "approve", "1", "--reviewer", "ana", "--db", "lib.db")
    finally:
        undo()
    one_line_error(result, "lib.db")
    assert sqlite3.connect(grown).execute("select status from strategies").fetchone() == ("pending",)


def test_10_database_locked_by_another_connection(grown, monkeypatch):
    try:
        import strategist.store.engine as engine
    except ImportError:  # an older layout: wait the full busy timeout
        pass
    else:
        monkeypatch.setattr(engine, "BUSY_TIMEOUT_SECONDS", 0.5)
    holder = sqlite3.connect(grown, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = run("strategies", "approve", "1", "--reviewer", "ana", "--db", "lib.db")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    one_line_error(result, "lib.db", "locked")
    assert sqlite3.connect(grown).execute("select status from strategies").fetchone() == ("pending",)


def damage(db: Path, *, only: tuple[str, ...] | None = None) -> None:
    """Write garbage over the pages of a real database, keeping its header and schema (and the
    record of applied migrations) intact, so it still opens: every other page, or the pages of
    the tables and indexes named in ``only``."""
    import random

    checkpointed(db)
    con = sqlite3.connect(db)
    try:
        pages = con.execute("SELECT name, pageno FROM dbstat").fetchall()
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat table to find a table's pages")
    finally:
        con.close()
    intact = ("sqlite_schema", "sqlite_master", "schema_migrations", "sqlite_autoindex_schema_migrations_1")
    hit = sorted({p for name, p in pages if (name in only if only else name not in intact) and p > 1})
    size = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    rng = random.Random(7)
    with db.open("r+b") as f:
        for page in hit:
            f.seek((page - 1) * size)
            f.write(rng.randbytes(size))


@pytest.mark.parametrize(
    "command",
    [("strategies", "list"), ("strategies", "import", "lib.yaml"), ("strategies", "export", "out.yaml")],
    ids=lambda c: "-".join(c[:2]),
)
def test_10_damaged_database(grown, cwd, command):
    clean(run("strategies", "export", "lib.yaml", "--db", "lib.db"))
    damage(grown)
    result = run(*command, "--db", "lib.db")
    one_line_error(result, "lib.db", "damaged")
    assert not (cwd / "out.yaml").exists()


def test_10_init_on_a_damaged_database_fails(grown, cwd):
    damage(grown, only=("strategies", "strategy_versions", "reviews"))
    result = run("init", "--db", "lib.db")
    one_line_error(result, "lib.db", "damaged")
    assert "database lib.db" not in result.stdout


# -- 14. an 80-column terminal --------------------------------------------------------------------------
def test_14_strategies_list_keeps_the_trigger_readable_in_80_columns(grown, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    listed = run("strategies", "list", "--db", "lib.db")
    clean(listed)
    trigger = world.HELPFUL["trigger"]
    pieces = [line.rstrip().rstrip("│").rsplit("│", 1)[-1].strip() for line in listed.stdout.splitlines()]
    assert max(len(p) for p in pieces if p and p in trigger) >= 30, listed.stdout
    assert all(len(line) <= 80 for line in listed.stdout.splitlines())


def test_14_review_shows_the_strategy_and_gate_first_and_dialogues_on_d(grown, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    queue = run("review", "--db", "lib.db", "--reviewer", "ana", input="d\ns\nq\n")
    clean(queue)
    first, _, rest = queue.stdout.partition("> ")
    assert "when: " + world.HELPFUL["trigger"][:20] in first and "gate: mean paired gain" in first
    assert "before/after" not in first and "without the strategy" not in first
    assert len(first.splitlines()) <= 24, first  # one screen
    shown, _, after = rest.partition("> ")
    assert "before/after" in shown and "without the strategy" in shown and "judge: " in shown
    assert "skipped 1" in after


# -- 15. help, path, and an oversized pack ------------------------------------------------------------------
@pytest.mark.parametrize("command", [("strategies", "show"), ("runs", "show")], ids="-".join)
def test_15_json_help_of_a_show_command_does_not_promise_an_array(command):
    result = run(*command, "--help")
    clean(result)
    help_text = " ".join(result.stdout.split())
    assert "--json" in help_text and "JSON array" not in help_text
    assert "an object for one" in help_text


def test_15_path_prints_the_database_absolute_and_the_response_cache(cwd):
    clean(run("init", "--db", "lib.db"))
    result = run("path", "--db", "lib.db")
    clean(result)
    lines = " ".join(result.stdout.split())
    assert f"database: {(cwd / 'lib.db').resolve()}" in lines
    assert "response cache: in the database" in lines and "--cache-db" in lines


def test_15_a_50_mb_domain_pack_is_refused_unread(cwd):
    big = cwd / "big" / "domain.yaml"
    big.parent.mkdir()
    with big.open("wb") as f:
        f.write(b"id: big\n")
        f.truncate(50 * 2**20)  # sparse: 50 MiB on paper, nothing on disk
    result = run("domains", "add", big, "--db", "lib.db")
    one_line_error(result, "domain.yaml", "50.0 MiB", "at most")


@pytest.mark.parametrize("broken", ["yaml", "field", "scenarios"])
def test_init_with_a_malformed_pack_leaves_no_database(cwd, broken):
    pack = cwd / "bad" / "domain.yaml"
    pack.parent.mkdir()
    good = (NORTHWIND / "domain.yaml").read_text()
    if broken == "yaml":
        pack.write_text("id: bad\nname: [unclosed\n")
    elif broken == "field":
        pack.write_text(good.replace("max_turns: 6", "max_turns: many"))
    else:
        pack.write_text(good)
        (pack.parent / "scenarios.yaml").write_text("domain: northwind\nscenarios:\n  - title: x\n")
    result = run("init", "--db", "lib.db", "--domain", pack)
    one_line_error(result, "bad")
    assert sorted(p.name for p in cwd.iterdir()) == ["bad"]


# -- 15a. a conflict says what the reviewer saw ------------------------------------------------------
def test_15a_conflict_states_the_status_the_reviewer_saw(grown):
    """Bob looked at version 2, approved; carol edited it to version 3 since. Bob's retire of
    version 2 is a conflict that does not claim he saw version 2 pending."""

    def strategies(*args: str, reviewer: str):
        return run("strategies", *args, "--reviewer", reviewer, "--db", "lib.db")

    clean(strategies("edit", "1", "--guidance", "Offer store credit.", "--approve", reviewer="alice"))
    clean(strategies("edit", "1", "--guidance", "Offer credit (rule 4).", reviewer="carol"))
    result = strategies("retire", "1", "--version", "2", "--note", "too vague", reviewer="bob")
    line = one_line_error(result, "you saw version 2", "it is now version 3 (pending, edited by carol")
    assert "version 2 (pending)" not in line
    status = sqlite3.connect(grown).execute("select status, version from strategies").fetchone()
    assert status == ("pending", 3)


def test_15a_conflict_in_the_review_queue_names_the_status_seen(grown):
    """The queue read version 1 pending; alice approved it meanwhile: bob's key gets a conflict
    that says pending (what bob saw) and approved (what it is now)."""
    from strategist.audit.lifecycle import ConflictError, ReviewRequest

    store = Store.open(grown)
    try:
        seen = store.get_strategy(1)
        store.review(ReviewRequest(1, "approve", "alice", seen_version=1, seen_status="pending"))
        with pytest.raises(ConflictError) as err:
            store.review(
                ReviewRequest(1, "reject", "bob", "no", seen_version=seen.version, seen_status=seen.status)
            )
    finally:
        store.close()
    assert "you saw version 1 (pending), it is now version 1 (approved, approved by alice" in str(err.value)


# -- 15b. the grow estimate is a range that holds the real count -------------------------------------
def grow_with_estimate(cwd, scripted, *options: str) -> tuple[int, int, int]:
    """(low, high, real): the range grow printed before the run and the model calls it made."""
    import re

    clean(run("init", "--db", "lib.db"))
    result = run("grow", "--db", "lib.db", *options, *scripted)
    clean(result)
    said = " ".join(result.stdout.split())
    found = re.search(r"between ([\d,]+) and ([\d,]+) model calls", said)
    assert found, said
    assert "re-asks of invalid output come on top" in said and "ends early" in said
    low, high = (int(x.replace(",", "")) for x in found.groups())
    real = (
        sqlite3.connect(cwd / "lib.db")
        .execute("select count(*) from llm_calls where not cache_hit")
        .fetchone()
    )
    return low, high, real[0]


GROW = ("--scenarios", "3", "--generate", "1", "--samples", "2", "--max-turns", "3", "--max-strategies", "2")


def test_15b_grow_estimate_is_a_range_holding_the_real_count(cwd, scripted):
    low, high, real = grow_with_estimate(cwd, scripted, *GROW, "--rounds", "2")
    assert low <= real <= high, (low, real, high)
    assert low < high


def test_15b_the_low_end_is_a_grow_where_no_scenario_is_weak(cwd, scripted):
    low, high, real = grow_with_estimate(cwd, scripted, *GROW, "--weak", "0")
    assert real == low < high


def test_15b_the_high_end_is_reached_when_every_proposal_is_gated(store, northwind):
    """One weak scenario, two unlike proposals, both gated: the run makes exactly the high end's
    calls. The no-strategy side of the gate is shared by both candidates (counted once)."""
    import asyncio

    from auditkit import scenario

    from strategist.core.gate import GateConfig
    from strategist.engine.estimate import estimate
    from strategist.engine.grow import GrowConfig, Grower

    domain = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(domain)
    store.add_scenario(scenario(domain))

    def teacher(messages, sampling):
        if sampling.json_schema:
            return json.dumps({"strategies": [world.HELPFUL, world.USELESS]})
        return "I can offer store credit."

    models = world.models(world.HELPFUL)
    models.teacher = FunctionModel(teacher, name="scripted/teacher")
    config = GrowConfig(
        scenarios=1,
        generate=0,
        max_strategies=2,
        # One batch: the sequential gate's high end is every candidate running to its cap.
        gate=GateConfig(samples=3, variants=0, regression=0, max_samples=3),
    )
    names = {r: getattr(models, r).name for r in ROLES}
    expected = estimate(config, domain, names, lambda *_: None)
    summary = asyncio.run(Grower(store, domain, models, config).run())
    assert summary.candidates == 2 and summary.accepted + summary.rejected == 2
    real = store.call_totals(summary.run_id)["calls"]
    assert real == expected.total_calls == 2 + (3 + 6 + 3) * 5  # coaching; selection, with, without
    assert expected.total_low_calls == 3 * (2 + 1 + 2)  # 3 dialogues: 2 student, 1 customer, 2 judge calls


# -- 15c. after kill -9 and resume, the ledger holds every call behind what was stored ------------
CALL_LOGGING_CLI = """
import asyncio, os, sys
sys.path.insert(0, {tests!r})
import world
from strategist.cli import main
from strategist.models import FunctionModel, register_model

DELAY = float(os.environ.get("SCRIPTED_DELAY", "0"))
LOG = os.open(os.environ["CALL_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # survives kill -9

def logged(fn, role):
    async def call(messages, sampling):
        await asyncio.sleep(DELAY)
        out = fn(messages, sampling)
        os.write(LOG, role.encode() + b"\\n")
        return out
    return call

fns = {{"teacher": world.Teacher(world.HELPFUL), "student": world.student_fn,
        "customer": world.Customer(), "judge": world.judge_fn}}
for role, fn in fns.items():
    register_model(f"scripted/{{role}}", FunctionModel(logged(fn, role), name=f"scripted/{{role}}"))
sys.argv = ["strategist", *sys.argv[1:]]
main()
"""
KILLED_GROW = (
    "grow", "--db", "g.db", "--scenarios", "2", "--generate", "1", "--samples", "3", "--variants", "0",
    "--regression", "1", "--max-turns", "2", "--max-strategies", "2", "--json",
    *(f"--{r}=scripted/{r}" for r in ROLES),
)  # fmt: skip


def test_15c_after_two_kills_and_resume_summary_and_ledger_count_every_call(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "cli.py"
    script.write_text(CALL_LOGGING_CLI.format(tests=str(Path(__file__).parent)))

    def cli(where: Path, *args: str, delay: float = 0.0) -> subprocess.Popen:
        env = {**os.environ, "SCRIPTED_DELAY": str(delay), "CALL_LOG": str(where / "calls.log")}
        for r in ROLES:
            env.pop(f"STRATEGIST_{r.upper()}_MODEL", None)
        return subprocess.Popen(
            [sys.executable, str(script), *args], cwd=where, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def finish(p: subprocess.Popen) -> dict:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        return json.loads(out)

    def count(db: Path, sql: str) -> int:
        con = sqlite3.connect(db)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()

    ref, killed = tmp_path / "ref", tmp_path / "killed"
    for d in (ref, killed):
        d.mkdir()
        assert cli(d, "init", "--db", "g.db").wait(timeout=60) == 0
    needed = finish(cli(ref, *KILLED_GROW))["llm_calls"]  # what the stored results take, uninterrupted
    assert needed > 30

    db = killed / "g.db"
    for args, stored in ((KILLED_GROW, 4), (("grow", "--db", "g.db", "--resume", "--json"), 10)):
        victim = cli(killed, *args, delay=0.03)
        deadline = time.monotonic() + 90
        while count(db, "select count(*) from dialogues") < stored and time.monotonic() < deadline:
            time.sleep(0.002)
        assert victim.poll() is None, "the run finished before it could be killed"
        os.kill(victim.pid, signal.SIGKILL)  # right after a dialogue was stored
        victim.wait(timeout=30)
    summary = finish(cli(killed, "grow", "--db", "g.db", "--resume", "--json"))
    assert summary["status"] == "completed"

    real = count(db, "select count(*) from llm_calls where not cache_hit")
    hits = count(db, "select count(*) from llm_calls where cache_hit")
    made = len((killed / "calls.log").read_text().split())
    # The summary is the ledger's count, and the ledger holds the calls of every stored result
    # (made in some attempt, or replayed from the cache); only calls whose results were lost
    # with a kill, and made again, may be missing.
    assert (summary["llm_calls"], summary["cache_hits"]) == (real, hits)
    assert real + hits >= needed
    assert real <= made


def test_15b_the_high_end_counts_every_tool_step(store, northwind):
    """An agent that takes every tool step it may in every turn: the high end is what it costs."""
    import asyncio

    from auditkit import scenario

    from strategist.core.gate import GateConfig
    from strategist.core.tools import ToolsConfig, ToolSpec
    from strategist.engine.estimate import estimate
    from strategist.engine.grow import GrowConfig, Grower
    from strategist.models import tool_call
    from strategist.tools import LocalEnvironment, ScriptedToolset

    lookup = ToolSpec(name="get_order", description="Look an order up.", parameters={"type": "object"})
    domain = northwind.model_copy(
        update={"max_turns": 2, "tools": ToolsConfig(python="orders.tools:TOOLS", max_steps=2)}
    )
    store.upsert_domain(domain)
    store.add_scenario(scenario(domain))

    def student(messages, sampling, tools):
        if tools is not None and tools.choice != "none":
            return tool_call("get_order", {})
        return "Sorry, I cannot help with that."

    env = LocalEnvironment(factory=lambda: ScriptedToolset([lookup], {"get_order": lambda a: "{}"}), name="t")
    models = world.models(world.HELPFUL)
    models.student = FunctionModel(student, name="scripted/student")
    config = GrowConfig(
        scenarios=1,
        generate=0,
        max_strategies=1,
        gate=GateConfig(samples=2, variants=0, regression=0, max_samples=2),  # one batch: the cap
    )
    names = {r: getattr(models, r).name for r in ROLES}
    expected = estimate(config, domain, names, lambda *_: None, scenarios=store.list_scenarios(split="train"))
    summary = asyncio.run(Grower(store, domain, models, config, tools=env).run())
    assert summary.candidates == 1
    # 6 dialogues (2 selection, 2 with, 2 without) of 2 turns of 3 student calls, 1 customer, 2 judge.
    assert store.call_totals(summary.run_id)["calls"] == expected.total_calls == 2 + 6 * (2 * 3 + 1 + 2)
    assert expected.low_calls["student"] == 2 * 2  # no tool steps at the low end
