"""The HTML eval report (and ``strategist eval``'s table) on the cases a first run meets: a library
grown in one round, an imported library, no library at all, one pair per scenario, differences
of both signs, and links to dialogues that open them. Evals run on scripted models."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
from html import unescape

import pytest
import world
from typer.testing import CliRunner

from strategist.cli import app
from strategist.core.domain import Scenario
from strategist.core.gate import GateConfig
from strategist.engine.grow import GrowConfig, Grower
from strategist.models import FunctionModel, register_model, unregister_model

ROLES = ("teacher", "student", "customer", "judge")


@pytest.fixture
def scripted():
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
    yield [f"--{r}=scripted/{r}" for r in ("student", "customer", "judge")]
    for role in ROLES:
        unregister_model(f"scripted/{role}")


def _scenario(domain, title, split):
    return Scenario(
        domain=domain.id,
        title=title,
        intent="refund_late_return",
        persona={"mood": "angry"},
        goal="Get a card refund for a jacket delivered 45 days ago.",
        opening="I want a cash refund for a jacket delivered 45 days ago.",
        split=split,
    )


def _library_db(path, northwind, *, grow: bool):
    """Two test scenarios; with ``grow``, one grow round on a train scenario whose one accepted
    strategy is then approved."""
    import asyncio

    from strategist.store import Store

    store = Store.open(path)
    d = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(d)
    store.add_scenario(_scenario(d, "train one", "train"))
    for i in range(2):
        store.add_scenario(_scenario(d, f"held out {i}", "test"))
    if grow:
        gate = GateConfig(samples=3, variants=0, regression=0)
        config = GrowConfig(rounds=1, scenarios=1, generate=0, gate=gate)
        summary = asyncio.run(Grower(store, d, world.models(world.HELPFUL), config).run())
        assert summary.accepted == 1
    store.close()
    if grow:
        con = sqlite3.connect(path)
        con.execute("update strategies set status = 'approved'")
        con.commit()
        con.close()


@pytest.fixture
def grown(tmp_path, monkeypatch, northwind):
    monkeypatch.chdir(tmp_path)
    _library_db(tmp_path / "lib.db", northwind, grow=True)
    return tmp_path


@pytest.fixture
def imported(grown, northwind):
    """A second database whose library was imported from the grown one: no grow rounds in it."""
    runner = CliRunner()
    out = runner.invoke(app, ["strategies", "export", "lib.yaml", "--db", "lib.db"])
    assert out.exit_code == 0, out.output
    _library_db(grown / "imported.db", northwind, grow=False)
    out = runner.invoke(app, ["strategies", "import", "lib.yaml", "--db", "imported.db"])
    assert out.exit_code == 0, out.output
    con = sqlite3.connect(grown / "imported.db")
    con.execute("update strategies set status = 'approved'")
    con.commit()
    assert con.execute("select count(*) from candidates").fetchone() == (0,)
    con.close()
    return grown


@pytest.fixture
def figures(monkeypatch):
    """The report's matplotlib figures, by title, instead of PNGs."""
    import strategist.report.html as html

    captured: dict[str, object] = {}

    def keep(fig):
        captured[fig.axes[0].get_title()] = fig
        return "data:image/png;base64,"

    monkeypatch.setattr(html, "_png", keep)
    yield captured
    import matplotlib.pyplot as plt

    plt.close("all")


def _eval(db: str, scripted, *extra: str):
    result = CliRunner().invoke(app, ["eval", "--db", db, "--max-turns", "2", *extra, *scripted])
    assert result.exit_code == 0, result.output
    return result


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


# -- library growth -----------------------------------------------------------------------------------
def test_one_grow_round_is_drawn(grown, scripted, figures):
    _eval("lib.db", scripted, "--samples", "3", "--report", "report.html")
    ax = figures["Library growth per grow round"].axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    points = [ln for ln in ax.lines if ln.get_marker() not in (None, "None", "") and len(ln.get_xdata()) == 1]
    assert bars or points, "the single grow round is not visible"
    lo, hi = ax.get_ylim()
    assert lo <= 0 < 1 <= hi  # the axis shows the one accepted strategy


def test_an_imported_library_says_why_there_is_no_growth(imported, scripted):
    _eval("imported.db", scripted, "--samples", "3", "--report", "report.html")
    html = (imported / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2  # scores and differences; no empty growth box
    text = _text(html)
    assert "No grow rounds recorded for domain 'northwind' in this database" in text
    assert "imported" in text
    assert "unknown" not in text
    # It was grown elsewhere, with this student; the header says so.
    assert "library grown with: scripted/student (in another database" in text


def test_no_library_at_all_is_said_in_the_header_and_the_table(tmp_path, monkeypatch, northwind, scripted):
    monkeypatch.chdir(tmp_path)
    _library_db(tmp_path / "empty.db", northwind, grow=False)
    out = _eval("empty.db", scripted, "--samples", "2", "--report", "report.html")
    terminal = " ".join(out.stdout.split())
    assert "library empty: no approved strategies in this database" in terminal
    assert "unknown" not in terminal
    text = _text((tmp_path / "report.html").read_text())
    assert "library: no strategies grown in this database" in text
    assert "unknown" not in text
    assert "No grow rounds recorded for domain 'northwind' in this database, and its library is empty" in text


# -- n = 1 --------------------------------------------------------------------------------------------
def test_one_pair_gives_no_interval(grown, scripted):
    con = sqlite3.connect(grown / "lib.db")
    con.execute("update scenarios set split = 'dev' where title = 'held out 1'")
    con.commit()
    con.close()
    out = _eval("lib.db", scripted, "--samples", "1", "--report", "report.html")
    r = json.loads(_eval("lib.db", scripted, "--samples", "1", "--json").stdout)
    assert r["library_vs_none"]["n"] == 1 and r["scenarios"][0]["delta_none"]["n"] == 1
    mean = r["library_vs_none"]["mean"]
    collapsed = f"[{mean:+.3f}, {mean:+.3f}]"
    terminal = " ".join(out.stdout.split())
    assert "n too small" in terminal and collapsed not in terminal
    html = (grown / "report.html").read_text()
    assert "n too small" in _text(html) and collapsed not in html


def test_the_interval_is_kept_from_two_pairs_on(grown, scripted):
    out = _eval("lib.db", scripted, "--samples", "3", "--report", "report.html")
    assert "n too small" not in out.stdout
    assert "n too small]" not in (grown / "report.html").read_text()


# -- the sign of a difference ---------------------------------------------------------------------------
def test_differences_are_colored_by_their_sign(grown, scripted, figures):
    from strategist.report import render_eval_report
    from strategist.store import Store

    r = json.loads(_eval("lib.db", scripted, "--samples", "3", "--json").stdout)
    store = Store.open(grown / "lib.db")
    stored = store.get_run(r["run_id"]).summary
    assert stored["scenarios"] == r["scenarios"]
    base = stored["scenarios"][0]
    cases = {  # scenario id -> (mean, low, high, n)
        901: (0.2, 0.1, 0.3, 3),
        902: (-0.2, -0.3, -0.1, 3),
        903: (0.05, -0.1, 0.2, 3),
        904: (0.0, 0.0, 0.0, 3),
        905: (-0.4, -0.4, -0.4, 1),
    }
    stored["scenarios"] = [
        {
            **base,
            "scenario_id": sid,
            "delta_none": {"mean": m, "ci_low": lo, "ci_high": hi, "n": n, "confidence": 0.95},
            "dialogues": {"none": [], "generic": [], "library": []},
        }
        for sid, (m, lo, hi, n) in cases.items()
    ]
    render_eval_report(stored, store, grown / "report.html")
    store.close()

    ax = figures["Per-scenario paired differences"].axes[0]
    points = {}
    for line in ax.lines:
        if line.get_marker() == "o" and len(line.get_xdata()) == 1:
            points[round(float(line.get_xdata()[0]), 3)] = line
    import matplotlib.colors as mcolors

    def hue(x: float) -> str:
        r, g, b = mcolors.to_rgb(points[x].get_markeredgecolor())
        if max(r, g, b) - min(r, g, b) < 0.1:
            return "gray"
        return "green" if g > max(r, b) else "red" if r > max(g, b) else "other"

    assert hue(0.2) == "green"
    assert hue(-0.2) == "red"
    assert hue(0.05) == "gray"  # the interval straddles 0
    assert hue(0.0) == "gray"
    assert hue(-0.4) == "red"  # no interval: by the sign of its mean
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("library better" in t for t in legend) and any("library worse" in t for t in legend)
    assert any("includes 0" in t for t in legend) and any("n too small" in t for t in legend)

    html = (grown / "report.html").read_text()
    text = _text(html)
    assert "interval below 0: library worse" in text  # the legend in the page too
    row = re.search(r'<tr id="scenario-902">.*?</tr>', html, re.S).group(0)
    assert 'class="neg"' in row and 'class="pos"' not in row


# -- links to dialogues ----------------------------------------------------------------------------------
def test_a_link_to_a_dialogue_opens_it(grown, scripted):
    _eval("lib.db", scripted, "--samples", "3", "--report", "report.html")
    html = (grown / "report.html").read_text()
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1 and "<script src" not in html
    assert "http://" not in html and "https://" not in html  # still no external assets
    target = re.search(r'href="#(dialogue-\d+)"', html).group(1)
    assert f'<details id="{target}">' in html  # collapsed until its link is followed
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node to run the page's script")
    harness = """
    const elements = {};
    for (const id of IDS) elements[id] = {tagName: "DETAILS", open: false, scrolled: false,
                                         scrollIntoView() { this.scrolled = true; }};
    const handlers = {};
    globalThis.location = {hash: "#" + IDS[0]};
    globalThis.document = {getElementById: (id) => elements[id] || null};
    globalThis.window = {addEventListener: (name, fn) => { handlers[name] = fn; }};
    SCRIPT
    handlers["DOMContentLoaded"]();                  // opened from another page with the anchor
    location.hash = "#" + IDS[1]; handlers["hashchange"]();   // a link followed within the page
    location.hash = "#nowhere"; handlers["hashchange"]();
    console.log(JSON.stringify(IDS.map((id) => [elements[id].open, elements[id].scrolled])));
    """
    ids = re.findall(r'<details id="(dialogue-\d+)"', html)[:3]
    code = harness.replace("IDS", json.dumps(ids)).replace("SCRIPT", scripts[0])
    out = subprocess.run([node, "-e", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == [[True, True], [True, True], [False, False]]


def test_the_judging_line_counts_in_the_singular_and_the_plural(grown, scripted):
    from strategist.report import render_eval_report
    from strategist.store import Store

    r = json.loads(_eval("lib.db", scripted, "--samples", "3", "--json").stdout)
    store = Store.open(grown / "lib.db")
    stored = store.get_run(r["run_id"]).summary
    for partial, flagged, expected in ((1, 1, "1 was judged"), (2, 0, "2 were judged")):
        stored.update(partial_judgements=partial, flagged_dialogues=flagged)
        render_eval_report(stored, store, grown / "report.html")
        text = (grown / "report.html").read_text()
        assert expected in text
        assert (f"{flagged} was left out" if flagged == 1 else f"{flagged} were left out") in text
    store.close()
