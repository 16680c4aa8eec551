"""A grow really killed with SIGKILL in the middle, then finished with --resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from world import ROLES

SCRIPT = Path(__file__).with_name("scripted_cli.py")
GROW = [
    "grow",
    "--scenarios",
    "2",
    "--generate",
    "1",
    "--samples",
    "3",
    "--variants",
    "0",
    "--regression",
    "1",
    "--max-turns",
    "2",
    "--max-strategies",
    "2",
    "--json",
    *(f"--{r}=scripted/{r}" for r in ROLES),
]


def _cli(args, cwd, delay=0.0, **kw):
    env = {**os.environ, "SCRIPTED_DELAY": str(delay)}
    for r in ROLES:
        env.pop(f"STRATEGIST_{r.upper()}_MODEL", None)
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _rows(db: Path, sql: str):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _snapshot(db: Path) -> dict:
    return {
        "dialogues": _rows(
            db, "select candidate_id, scenario_id, sample, condition from dialogues order by 1, 2, 3"
        ),
        "judgements": _rows(db, "select count(*) from judgements")[0][0],
        "scenarios": _rows(db, "select title, origin from scenarios order by id"),
        "candidates": _rows(db, "select scenario_id, trigger, outcome from candidates order by id"),
        "strategies": _rows(db, "select trigger, status from strategies order by id"),
    }


def test_kill_9_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    ref_dir, dir_ = tmp_path / "ref", tmp_path / "killed"
    ref_dir.mkdir()
    dir_.mkdir()
    for d in (ref_dir, dir_):
        assert _cli(["init", "--db", "g.db"], d).wait(timeout=60) == 0

    ref = _cli([*GROW, "--db", "g.db"], ref_dir)
    out, err = ref.communicate(timeout=120)
    assert ref.returncode == 0, err
    expected = _snapshot(ref_dir / "g.db")
    reference = json.loads(out)
    assert reference["accepted"] >= 1 and len(expected["dialogues"]) > 12

    # The same run, slowed down, killed once about half of its dialogues are stored.
    victim = _cli([*GROW, "--db", "g.db"], dir_, delay=0.03)
    db = dir_ / "g.db"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        time.sleep(0.1)
        n = _rows(db, "select count(*) from dialogues")[0][0]
        if n >= len(expected["dialogues"]) // 2:
            break
    assert victim.poll() is None, "the run finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert _rows(db, "select status from runs") == [("running",)]
    partial = _snapshot(db)
    assert 0 < len(partial["dialogues"]) < len(expected["dialogues"])
    paid_before = _rows(db, "select count(*) from llm_calls where cache_hit = 0")[0][0]

    resumed = _cli(["grow", "--db", "g.db", "--resume", "--json"], dir_)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    summary = json.loads(out)
    assert summary["status"] == "completed" and summary["run_id"] == 1

    got = _snapshot(db)
    assert got == expected  # same rows: nothing duplicated, nothing lost, same accepted strategies
    dupes = _rows(
        db,
        "select candidate_id, scenario_id, sample, count(*) from dialogues "
        "group by candidate_id, scenario_id, sample having count(*) > 1",
    )
    assert dupes == []
    assert _rows(db, "select count(*) from runs") == [(1,)]
    # Work finished before the kill was not paid for twice: the resumed run made fewer real model
    # calls than a whole run, and with the first one's no more than an uninterrupted run made (the
    # same number, unless the kill lost the last batch of ledger rows).
    assert 0 < summary["llm_calls"] - paid_before < reference["llm_calls"]
    assert summary["llm_calls"] <= reference["llm_calls"]
    assert (
        _rows(
            db,
            "select count(*) from judgements j join dialogues d on d.id = j.dialogue_id "
            "group by j.dialogue_id having count(*) > 1",
        )
        == []
    )


def test_resume_without_an_interrupted_run_is_a_clean_error(tmp_path):
    assert _cli(["init", "--db", "g.db"], tmp_path).wait(timeout=60) == 0
    p = _cli(["grow", "--db", "g.db", "--resume"], tmp_path)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1 and err.strip() == "error: no interrupted run to resume"
