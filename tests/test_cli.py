"""Every CLI command through CliRunner, on scripted models registered under model names."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
import world
from typer.testing import CliRunner
from world import ROLES

from strategist.cli import app
from strategist.models import register_model, unregister_model

runner = CliRunner()


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("STRATEGIST_DB", "STRATEGIST_CONFIG", *(f"STRATEGIST_{r.upper()}_MODEL" for r in ROLES)):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_lists_the_nouns():
    result = run("--help")
    assert result.exit_code == 0
    for noun in ("init", "grow", "scenarios", "strategies", "runs", "domains", "path"):
        assert noun in result.stdout


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; from typer.testing import CliRunner; from strategist.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
        "print(sorted(m for m in ('litellm', 'llama_cpp', 'sqlmodel') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_init_creates_settings_and_database(cwd):
    result = run("init", "--db", "lib.db")
    assert result.exit_code == 0, result.output
    assert (cwd / "strategist.toml").read_text().startswith("# strategist settings")
    rows = sqlite3.connect(cwd / "lib.db").execute("select id from domains").fetchall()
    assert rows == [("northwind",)]
    assert "14 scenarios" in result.stdout
    # Running it again keeps the settings and does not duplicate the pack's scenarios.
    again = run("init", "--db", "lib.db")
    assert "kept existing" in again.stdout and "14 scenarios" in again.stdout


def test_grow_then_list_and_show(cwd, scripted):
    assert run("init", "--db", "lib.db").exit_code == 0
    result = run(
        "grow",
        "--db",
        "lib.db",
        "--scenarios",
        "1",
        "--generate",
        "0",
        "--samples",
        "3",
        "--variants",
        "0",
        "--regression",
        "0",
        "--max-turns",
        "2",
        "--max-strategies",
        "1",
        "--json",
        *scripted,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["accepted"] == 1
    # 3 selection dialogues, then 3 fresh pairs for the gate.
    assert summary["dialogues"] == 9 and summary["llm_calls"] > 0

    listed = json.loads(run("strategies", "list", "--db", "lib.db", "--json").stdout)
    assert isinstance(listed, list) and len(listed) == 1
    assert listed[0]["status"] == "pending" and listed[0]["trigger"] == world.HELPFUL["trigger"]
    sid = str(listed[0]["id"])

    shown = run("strategies", "show", sid, "--db", "lib.db")
    assert shown.exit_code == 0
    text = " ".join(shown.stdout.split())  # wrapped lines joined again
    assert f"when: {world.HELPFUL['trigger']}" in text and f"do: {world.HELPFUL['guidance']}" in text
    assert "paired evidence" in shown.stdout and "95% anytime bounds" in shown.stdout
    assert "sequential gate" in shown.stdout and "source: the teacher's reply" in text
    detail = json.loads(run("strategies", "show", sid, "--db", "lib.db", "--json").stdout)
    assert detail["versions"][0]["version"] == 1 and detail["reviews"][0]["action"] == "created"

    assert (
        json.loads(run("strategies", "list", "--db", "lib.db", "--status", "approved", "--json").stdout) == []
    )
    runs = json.loads(run("runs", "list", "--db", "lib.db", "--json").stdout)
    assert runs[0]["status"] == "completed" and runs[0]["config"]["models"]["student"] == "scripted/student"
    shown_run = run("runs", "show", "1", "--db", "lib.db")
    assert shown_run.exit_code == 0 and "proposed strategies" in shown_run.stdout
    proposed = json.loads(run("runs", "show", "1", "--db", "lib.db", "--json").stdout)["candidates"]
    accepted = [c for c in proposed if c["outcome"] == "accepted"]
    assert accepted and accepted[0]["strategy_id"] == int(sid)
    assert accepted[0]["trigger"] == world.HELPFUL["trigger"]


def test_grow_human_output_has_a_summary_table(cwd, scripted):
    run("init", "--db", "lib.db")
    result = run(
        "grow",
        "--db",
        "lib.db",
        "--scenarios",
        "1",
        "--generate",
        "0",
        "--samples",
        "2",
        "--variants",
        "0",
        "--regression",
        "0",
        "--max-turns",
        "1",
        *scripted,
    )
    assert result.exit_code == 0, result.output
    for label in (
        "dialogues",
        "candidates proposed",
        "accepted (pending review)",
        "LLM calls",
        "tokens",
        "time",
    ):
        assert label in result.stdout


def test_grow_budget_stop_is_reported(cwd, scripted):
    run("init", "--db", "lib.db")
    result = run("grow", "--db", "lib.db", "--max-calls", "4", "--json", *scripted)
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["status"] == "stopped" and summary["llm_calls"] == 4


def test_role_models_come_from_settings_file(cwd, scripted):
    (cwd / "strategist.toml").write_text(
        'db = "lib.db"\n' + "".join(f'[roles.{r}]\nmodel = "scripted/{r}"\n' for r in ROLES)
    )
    result = run(
        "grow",
        "--scenarios",
        "1",
        "--generate",
        "0",
        "--samples",
        "1",
        "--variants",
        "0",
        "--regression",
        "0",
        "--max-turns",
        "2",
        "--json",
    )
    assert result.exit_code == 0, result.output
    models = {r[0] for r in sqlite3.connect(cwd / "lib.db").execute("select distinct model from llm_calls")}
    # The student scores low without strategies, so the teacher is called to coach: all four roles ran.
    assert models == {f"scripted/{r}" for r in ROLES}


def test_scenarios_list_show_and_import(cwd):
    run("init", "--db", "lib.db")
    items = json.loads(run("scenarios", "list", "--db", "lib.db", "--split", "test", "--json").stdout)
    assert len(items) == 4 and all(s["split"] == "test" for s in items)
    shown = run("scenarios", "show", str(items[0]["id"]), "--db", "lib.db")
    assert shown.exit_code == 0 and items[0]["title"][:30] in shown.stdout.replace("\n", " ")
    (cwd / "more.yaml").write_text(
        "domain: northwind\nscenarios:\n  - title: Extra\n    intent: size_exchange\n"
        "    goal: Swap boots for a bigger size.\n    opening: Hi, can I swap sizes?\n"
    )
    result = run("scenarios", "import", "more.yaml", "--db", "lib.db")
    assert result.exit_code == 0, result.output
    assert len(json.loads(run("scenarios", "list", "--db", "lib.db", "--json").stdout)) == 15


def test_bad_input_gets_one_line_and_exit_1(cwd):
    run("init", "--db", "lib.db")
    (cwd / "bad.yaml").write_text(
        "domain: northwind\nscenarios:\n  - title: Bad\n    intent: no_such_intent\n"
        "    goal: g\n    opening: o\n"
    )
    result = run("scenarios", "import", "bad.yaml", "--db", "lib.db")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert "bad.yaml" in result.stderr and "scenarios[0].intent" in result.stderr
    assert len(json.loads(run("scenarios", "list", "--db", "lib.db", "--json").stdout)) == 14


def test_unknown_ids_and_domains_are_clean_errors(cwd):
    run("init", "--db", "lib.db")
    for args in (
        ("strategies", "show", "99"),
        ("scenarios", "show", "99"),
        ("runs", "show", "9"),
        ("grow", "--domain", "nope"),
    ):
        result = run(*args, "--db", "lib.db")
        assert result.exit_code == 1, args
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_invalid_settings_file_is_a_clean_error(cwd):
    (cwd / "strategist.toml").write_text('[roles.student]\nmodle = "x"\n')
    result = run("grow")
    assert result.exit_code == 1
    assert "strategist.toml" in result.stderr and "modle" in result.stderr


def test_path_and_domains(cwd):
    run("init", "--db", "lib.db")
    assert "lib.db" in run("path", "--db", "lib.db").stdout
    doms = json.loads(run("domains", "list", "--db", "lib.db", "--json").stdout)
    assert doms == [{"id": "northwind", "name": "Northwind Outfitters support", "scenarios": 14}]


def test_unusable_model_stops_the_run_with_one_line(cwd, scripted):
    from strategist.errors import ModelUnavailableError
    from strategist.models import ScriptedModel

    register_model(
        "scripted/broken",
        ScriptedModel(
            [ModelUnavailableError("scripted/broken", "authentication failed")] * 3, name="scripted/broken"
        ),
    )
    try:
        run("init", "--db", "lib.db")
        args = [a for a in scripted if not a.startswith("--student")] + ["--student=scripted/broken"]
        result = run("grow", "--db", "lib.db", "--scenarios", "1", "--generate", "0", *args)
    finally:
        unregister_model("scripted/broken")
    assert result.exit_code == 1
    assert result.stderr == "error: model scripted/broken: authentication failed\n"
    status, reason = (
        sqlite3.connect(cwd / "lib.db").execute("select status, stop_reason from runs").fetchone()
    )
    assert status == "failed" and "authentication failed" in reason
