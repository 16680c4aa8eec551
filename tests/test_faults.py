"""A grow against a misbehaving OpenAI-compatible server on loopback: it completes, waits as told
on 429s, records every failure, and never crashes."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner
from world import ROLES

from strategist.cli import app

pytestmark = pytest.mark.server


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for r in ROLES:
        monkeypatch.delenv(f"STRATEGIST_{r.upper()}_MODEL", raising=False)
        monkeypatch.delenv(f"STRATEGIST_{r.upper()}_API_BASE", raising=False)
    return tmp_path


def _settings(path, url, retries=2, timeout=1.5):
    roles = "".join(
        f'[roles.{r}]\nmodel = "openai/{r}"\napi_base = "{url}"\njson_mode = "none"\n'
        f"timeout = {timeout}\nretries = {retries}\n"
        for r in ROLES
    )
    (path / "strategist.toml").write_text(f'db = "f.db"\n{roles}')


GROW = [
    "grow",
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
    "1",
    "--max-strategies",
    "1",
    "--json",
]


def test_grow_survives_every_kind_of_fault(project, fake_openai):
    # Request numbers that misbehave. 20 and 21 in a row, with retries=2, still recover; 30-32
    # exhaust the retries of one call, which must then be recorded as a failure.
    faults = {
        2: "429",
        5: "500",
        8: "malformed",
        11: "hang",
        14: "truncated",
        20: "500",
        21: "429",
        30: "500",
        31: "500",
        32: "500",
    }
    server = fake_openai(faults, hang_seconds=3.0, retry_after=1.0)
    _settings(project, server.url)
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, GROW)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert summary["dialogues"] >= 3

    outcomes = [o for _, _, o in server.log]
    for kind in ("429", "500", "malformed", "hang", "truncated"):
        assert kind in outcomes, f"fault {kind} was never served"
    # The retry after a 429 waited at least the Retry-After the server asked for.
    times = [t for t, _, _ in server.log]
    i = outcomes.index("429")
    assert times[i + 1] - times[i] >= 0.95

    db = sqlite3.connect(project / "f.db")
    failed_calls = db.execute("select role, error from llm_calls where ok = 0").fetchall()
    assert len(failed_calls) >= 1  # the call whose retries ran out
    assert all(err for _, err in failed_calls)
    events = db.execute("select message from events where kind = 'failure'").fetchall()
    assert len(events) >= len(failed_calls)  # each failed call surfaced as a recorded failure
    ok_calls = db.execute("select count(*) from llm_calls where ok = 1").fetchone()[0]
    assert ok_calls == summary["llm_calls"] - len(failed_calls)


def test_unreachable_server_fails_the_run_with_exit_1(project, fake_openai):
    server = fake_openai({n: "500" for n in range(200)})
    _settings(project, server.url, retries=0)
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, GROW)
    # Every dialogue failed: the run is marked failed and says so, instead of "completed".
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed" and "no dialogue could be judged" in summary["stop_reason"]


def test_eval_survives_faults(project, fake_openai):
    faults = {1: "500", 4: "429", 7: "malformed", 9: "truncated", 12: "500", 13: "500", 14: "500"}
    server = fake_openai(faults, retry_after=0.5)
    _settings(project, server.url)
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, ["eval", "--samples", "1", "--max-turns", "1", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    judged = sum(c["dialogues"] for c in r["conditions"])
    # 4 test scenarios x 3 conditions: the one call whose retries ran out cost one dialogue at most.
    assert judged + r["failures"] == 12 and r["failures"] >= 1
    db = sqlite3.connect(project / "f.db")
    assert db.execute("select count(*) from llm_calls where ok = 0").fetchone()[0] >= 1
    assert db.execute("select status from runs where command = 'eval'").fetchone() == ("completed",)
