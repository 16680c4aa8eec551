"""A real one-round grow on the embedded model, with tiny settings, checked row by row."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

pytest.importorskip("llama_cpp")

from strategist.cli import app


@pytest.mark.embedded
def test_one_round_grow_on_the_embedded_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for role in ("TEACHER", "STUDENT", "CUSTOMER", "JUDGE"):
        monkeypatch.delenv(f"STRATEGIST_{role}_MODEL", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--db", "e.db"]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "grow",
            "--db",
            "e.db",
            "--rounds",
            "1",
            "--scenarios",
            "2",
            "--generate",
            "1",
            "--samples",
            "1",
            "--variants",
            "0",
            "--regression",
            "0",
            "--max-turns",
            "1",
            "--max-strategies",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["rounds_completed"] == 1

    db = sqlite3.connect(tmp_path / "e.db")
    (run_id, status, models) = db.execute("select id, status, config from runs").fetchone()
    assert status == "completed"
    assert set(json.loads(models)["models"].values()) == {"embedded/smollm2"}
    roles = dict(db.execute("select role, count(*) from llm_calls where run_id = ? group by role", (run_id,)))
    assert roles.get("student", 0) >= 2 and roles.get("customer", 0) == 0  # one agent turn: no customer reply
    assert roles.get("judge", 0) >= 2 and roles.get("teacher", 0) >= 1
    tokens = db.execute("select sum(prompt_tokens), sum(completion_tokens) from llm_calls").fetchone()
    assert tokens[0] > 1000 and tokens[1] > 0

    dialogues = db.execute(
        "select id, turns, ended_by, seed from dialogues where run_id = ?", (run_id,)
    ).fetchall()
    assert len(dialogues) == summary["dialogues"] >= 2
    for _id, turns, ended_by, _seed in dialogues:
        turns = json.loads(turns)
        assert turns[0]["role"] == "customer" and turns[1]["role"] == "student"
        assert ended_by in ("max_turns", "stop_marker", "error")
    judged = db.execute("select score, rating, rating_method from judgements").fetchall()
    failures = db.execute(
        "select count(*) from events where kind in ('failure', 'judge_failure')"
    ).fetchone()[0]
    # Every dialogue is either judged or its judging failure is recorded; nothing is silently lost.
    assert len(judged) + failures >= len(dialogues)
    for score, rating, method in judged:
        assert 0.0 <= score <= 1.0
        assert method == "logprobs" and 1.0 <= rating <= 5.0
    generated = db.execute("select count(*) from scenarios where origin = 'generated'").fetchone()[0]
    assert generated == summary["scenarios_generated"]
