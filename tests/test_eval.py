"""strategist eval: the statistics against hand-computed values, a scripted end-to-end run, the
report's content (and its rendering in headless Chromium), and one run on the embedded model."""

from __future__ import annotations

import json
import shutil
import subprocess
from math import comb

import pytest
import world
from typer.testing import CliRunner
from world import ROLES

from strategist.cli import app
from strategist.core.domain import Scenario
from strategist.core.evaluation import Outcome, compare, paired_deltas, pass_hat_k, summarise
from strategist.core.gate import GateConfig
from strategist.engine.grow import GrowConfig, Grower
from strategist.store.tables import StrategyRow


# -- statistics ----------------------------------------------------------------------------------
def test_pass_hat_k_by_hand():
    assert pass_hat_k(3, 2, 2) == pytest.approx(1 / 3)  # C(2,2)/C(3,2)
    assert pass_hat_k(4, 4, 3) == 1.0
    assert pass_hat_k(4, 2, 3) == 0.0
    assert pass_hat_k(5, 3, 1) == pytest.approx(3 / 5)
    assert pass_hat_k(6, 4, 2) == pytest.approx(comb(4, 2) / comb(6, 2))
    with pytest.raises(ValueError):
        pass_hat_k(2, 1, 3)


def _o(sid, sample, cond, score, passed=1, total=1):
    return Outcome(sid, sample, cond, score, passed, total)


def test_summaries_and_paired_differences_by_hand():
    outcomes = [
        _o(1, 0, "none", 0.5),
        _o(1, 1, "none", 0.9),
        _o(1, 0, "library", 0.8),
        _o(1, 1, "library", 0.95),
        _o(2, 0, "none", 0.2, 0, 2),
        _o(2, 1, "none", 0.4, 1, 2),
        _o(2, 0, "library", 0.9),
        _o(2, 1, "library", 0.3),
    ]
    s = summarise(outcomes, "none", k=2, threshold=0.8)
    assert s.dialogues == 4
    assert s.mean_score == pytest.approx((0.5 + 0.9 + 0.2 + 0.4) / 4)
    assert s.check_pass_rate == pytest.approx((1 + 1 + 0 + 1) / (1 + 1 + 2 + 2))
    assert s.pass_rate == pytest.approx(1 / 4)  # only (1, 1): score 0.9 and all checks
    assert s.pass_hat_k == pytest.approx((0 + 0) / 2)  # neither scenario passes twice
    lib = summarise(outcomes, "library", k=2, threshold=0.8)
    assert lib.pass_hat_k == pytest.approx((1.0 + 0.0) / 2)  # scenario 1 passes both samples
    assert paired_deltas(outcomes, "library", "none") == pytest.approx([0.3, 0.05, 0.7, -0.1])
    r = compare(outcomes, "library", "none", seed=1)
    assert r.mean == pytest.approx((0.3 + 0.05 + 0.7 - 0.1) / 4) and r.ci_low <= r.mean <= r.ci_high
    assert compare(outcomes, "library", "none", scenario_id=1).mean == pytest.approx((0.3 + 0.05) / 2)
    assert summarise(outcomes, "generic", k=2, threshold=0.8).mean_score is None


# -- end to end on scripted models ------------------------------------------------------------------
@pytest.fixture
def scripted(scripted):
    """The scripted roles' flags, without the teacher's: eval has no teacher."""
    return [flag for flag in scripted if not flag.startswith("--teacher")]


def _scenario(domain, title, split, intent="refund_late_return"):
    return Scenario(
        domain=domain.id,
        title=title,
        intent=intent,
        persona={"mood": "angry"},
        goal="Get a card refund for a jacket delivered 45 days ago.",
        opening="I want a cash refund for a jacket delivered 45 days ago.",
        split=split,
    )


@pytest.fixture
def grown(tmp_path, monkeypatch, northwind):
    """A library with one approved strategy, grown on train scenarios, plus two test scenarios."""
    import asyncio

    from strategist.store import Store

    monkeypatch.chdir(tmp_path)
    store = Store.open(tmp_path / "lib.db")
    d = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(d)
    store.add_scenario(_scenario(d, "train one", "train"))
    for i in range(2):
        store.add_scenario(_scenario(d, f"held out {i}", "test"))
    gate = GateConfig(samples=3, variants=0, regression=0)
    summary = asyncio.run(
        Grower(store, d, world.models(world.HELPFUL), GrowConfig(scenarios=1, generate=0, gate=gate)).run()
    )
    assert summary.accepted == 1
    with store.session() as s:
        row = s.get(StrategyRow, summary.accepted_ids[0])
        row.status = "approved"
        s.add(row)
        s.commit()
    store.close()
    return tmp_path


def test_eval_compares_three_conditions_on_the_same_seeds(grown, scripted):
    result = CliRunner().invoke(
        app, ["eval", "--db", "lib.db", "--samples", "3", "--max-turns", "2", "--json", *scripted]
    )
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert [c["condition"] for c in r["conditions"]] == ["none", "generic", "library"]
    assert all(c["dialogues"] == 6 for c in r["conditions"])  # 2 test scenarios x 3 samples
    lib, none = r["conditions"][2], r["conditions"][0]
    assert lib["mean_score"] > none["mean_score"]
    assert r["library_vs_none"]["n"] == 6 and r["library_vs_none"]["ci_low"] > 0
    assert r["library_vs_generic"]["mean"] > 0
    assert r["strategies_available"] == 1 and r["include_pending"] is False
    assert r["student_model"] == "scripted/student" and r["library_student_models"] == ["scripted/student"]
    assert len(r["scenarios"]) == 2 and all(s["delta_none"]["mean"] > 0 for s in r["scenarios"])

    import sqlite3

    con = sqlite3.connect(grown / "lib.db")
    # The same customer seeds in every condition, and the library's strategy recorded on its turns.
    seeds = con.execute(
        "select condition, group_concat(seed) from (select condition, seed from dialogues "
        "where condition like 'eval:%' order by scenario_id, sample) group by condition"
    ).fetchall()
    assert len({s for _, s in seeds}) == 1
    turns = [
        json.loads(t) for (t,) in con.execute("select turns from dialogues where condition = 'eval:library'")
    ]
    assert all(any(tt["strategies"] for tt in t if tt["role"] == "student") for t in turns)
    # The train split is never evaluated by default.
    assert con.execute(
        "select count(*) from dialogues d join scenarios s on s.id = d.scenario_id "
        "where d.condition like 'eval:%' and s.split != 'test'"
    ).fetchone() == (0,)


def test_pending_strategies_are_only_used_when_asked(grown, scripted):
    import sqlite3

    sqlite3.connect(grown / "lib.db").execute("update strategies set status = 'pending'").connection.commit()
    r = json.loads(
        CliRunner().invoke(app, ["eval", "--db", "lib.db", "--samples", "3", "--json", *scripted]).stdout
    )
    assert r["strategies_available"] == 0 and r["library_vs_none"]["mean"] == 0
    r = json.loads(
        CliRunner()
        .invoke(app, ["eval", "--db", "lib.db", "--samples", "3", "--include-pending", "--json", *scripted])
        .stdout
    )
    assert r["include_pending"] is True and r["library_vs_none"]["mean"] > 0


def test_transfer_to_another_student_is_reported(grown, scripted, register_scripted):
    register_scripted("other/student", world.student_fn)
    out = CliRunner().invoke(
        app, ["eval", "--db", "lib.db", "--samples", "3", *scripted, "--student", "other/student"]
    )
    assert out.exit_code == 0, out.output
    text = " ".join(out.stdout.split())
    assert "student other/student, library grown with scripted/student (transfer)" in text


def test_report_is_self_contained_and_complete(grown, scripted):
    result = CliRunner().invoke(
        app, ["eval", "--db", "lib.db", "--samples", "3", "--report", "report.html", *scripted]
    )
    assert result.exit_code == 0, result.output
    html = (grown / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 3
    assert "http://" not in html and "https://" not in html  # opens offline: no external assets
    for text in (
        "library − no strategies",
        "library − generic checklist",
        "pass^3",
        "held out 0",
        "Library growth",
        "scripted/student",
    ):
        assert text in html
    # Every scenario row links to its dialogues, and every link has its target.
    import re

    links = set(re.findall(r'href="#(dialogue-\d+)"', html))
    anchors = set(re.findall(r'id="(dialogue-\d+)"', html))
    assert len(links) == 18 and links == anchors


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(grown, scripted):
    CliRunner().invoke(
        app, ["eval", "--db", "lib.db", "--samples", "3", "--report", "report.html", *scripted]
    )
    png = grown / "report.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={grown / 'chrome'}",
            "--window-size=1200,2400",
            f"--screenshot={png}",
            (grown / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a real page, not a blank one


def test_eval_without_held_out_scenarios_is_a_clean_error(tmp_path, monkeypatch, scripted):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    runner.invoke(app, ["init", "--db", "x.db"])
    result = runner.invoke(app, ["eval", "--db", "x.db", "--split", "dev", *scripted])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: domain 'northwind' has no dev scenarios")


@pytest.mark.embedded
def test_eval_on_the_embedded_model(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    monkeypatch.chdir(tmp_path)
    for r in ROLES:
        monkeypatch.delenv(f"STRATEGIST_{r.upper()}_MODEL", raising=False)
    runner = CliRunner()
    runner.invoke(app, ["init", "--db", "e.db"])
    import sqlite3

    con = sqlite3.connect(tmp_path / "e.db")
    keep = con.execute("select id from scenarios where split = 'test' order by id limit 1").fetchone()[0]
    con.execute("update scenarios set split = 'dev' where split = 'test' and id != ?", (keep,))
    con.commit()
    result = runner.invoke(app, ["eval", "--db", "e.db", "--samples", "1", "--max-turns", "1", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["student_model"] == "embedded/smollm2"
    assert sum(c["dialogues"] for c in r["conditions"]) + r["failures"] >= 3
    rows = con.execute("select count(*) from dialogues where condition like 'eval:%'").fetchone()[0]
    assert rows == 3
