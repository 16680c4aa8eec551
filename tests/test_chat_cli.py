"""``strategist chat``, ``strategist retrieve`` and ``strategist serve``'s start-up checks,
through CliRunner, on a scripted student registered under a model name."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from runtime_library import STRATEGIES, add_strategies
from typer.testing import CliRunner

from strategist.cli import app
from strategist.models import Sampling

runner = CliRunner()


@pytest.fixture
def db(tmp_path, monkeypatch, northwind):
    from strategist.store import Store

    monkeypatch.chdir(tmp_path)
    for var in (
        "STRATEGIST_DB",
        "STRATEGIST_CONFIG",
        "STRATEGIST_STUDENT_MODEL",
        "STRATEGIST_STUDENT_API_BASE",
    ):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "lib.db"
    store = Store.open(path)
    ids = add_strategies(store, northwind)
    store.close()
    return str(path), ids


@pytest.fixture
def student(register_scripted):
    """Says which strategies its prompt had, and how many customer messages it saw."""
    seen: list[list[dict[str, str]]] = []

    def fn(messages: list[dict[str, str]], sampling: Sampling) -> str:
        seen.append(messages)
        users = sum(1 for m in messages if m["role"] == "user")
        return f"[{messages[0]['content'].count('When:')} strategies, {users} customer messages]"

    register_scripted("scripted/chat", fn)
    return seen


def chat(db_path: str, text: str, *extra: str):
    args = ["chat", "--db", db_path, "--student", "scripted/chat", *extra]
    return runner.invoke(app, args, input=text, catch_exceptions=False)


def test_chat_replies_and_shows_the_strategies_of_each_turn(db, student):
    path, ids = db
    result = chat(path, "The stove arrived broken and damaged.\nAnd when does the back-ordered tent ship?\n")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "chatting with scripted/chat on domain 'northwind' (approved strategies)" in out
    assert re.search(r"bot> \[[1-3] strategies, 1 customer messages\]", out)
    assert re.search(r"bot> \[[1-3] strategies, 2 customer messages\]", out)  # the conversation carries on
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("strategies:")]
    assert len(lines) == 2
    assert lines[0].startswith(f"strategies: strategy:{ids['damaged']}@v1 (")
    assert lines[1].startswith(f"strategies: strategy:{ids['backorder']}@v1 (")
    assert "[pending]" not in out
    # The second turn's prompt was built for the second question.
    assert STRATEGIES["backorder"][1] in student[1][0]["content"]
    assert [m["role"] for m in student[1]] == ["system", "user", "assistant", "user"]


def test_reset_and_quit(db, student):
    path, _ = db
    result = chat(path, "broken stove\n/reset\nbroken tent\n/quit\nnever read\n")
    assert result.exit_code == 0, result.output
    assert "(conversation cleared)" in result.stdout
    assert len(student) == 2
    assert sum(1 for m in student[1] if m["role"] == "user") == 1


def test_json_turns_and_pending_strategies(db, student):
    path, ids = db
    result = chat(path, "Do you have a discount code or coupon?\n", "--json", "--include-pending", "--k", "1")
    assert result.exit_code == 0, result.output
    turn = json.loads(result.stdout)
    assert turn["customer"] == "Do you have a discount code or coupon?"
    assert turn["strategies"] == [f"strategy:{ids['discount']}@v1"]
    assert turn["include_pending"] is True
    assert turn["retrieval"]["strategies"][0]["status"] == "pending"
    assert turn["text"] == "[1 strategies, 1 customer messages]"
    human = chat(path, "Do you have a discount code or coupon?\n", "--include-pending")
    assert "approved and PENDING strategies" in human.stdout and "[pending]" in human.stdout


def test_chat_with_own_system_prompt(db, student):
    path, _ = db
    result = chat(path, "broken stove\n", "--system-prompt", "You are Acme's bot.", "--budget", "0")
    assert result.exit_code == 0, result.output
    assert student[0][0]["content"] == "You are Acme's bot."  # a zero budget leaves no room
    assert "strategies: none" in result.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--domain", "nowhere"], "unknown domain 'nowhere'"),
        (["--template", "missing.j2"], "prompt template not found"),
        (["--student", "embedded/tiny"], "unknown embedded model"),
    ],
)
def test_bad_input_is_a_one_line_error(db, student, extra, message):
    path, _ = db
    result = runner.invoke(app, ["chat", "--db", path, "--student", "scripted/chat", *extra], input="hi\n")
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_retrieve_shows_what_a_message_would_get(db):
    path, ids = db
    result = runner.invoke(app, ["retrieve", "The tent is back-ordered, when will it ship?", "--db", path])
    assert result.exit_code == 0, result.output
    assert f"strategy:{ids['backorder']}@v1" in result.stdout
    data = json.loads(runner.invoke(app, ["retrieve", "broken stove", "--db", path, "--json"]).stdout)
    assert data["refs"][0] == f"strategy:{ids['damaged']}@v1" and data["include_pending"] is False


def test_serve_checks_its_input_before_listening(db):
    path, _ = db
    result = runner.invoke(app, ["serve", "--db", path, "--domain", "nowhere", "--upstream", "scripted/x"])
    assert result.exit_code == 1
    assert "unknown domain 'nowhere'" in result.stderr


def test_help_stays_light():
    code = (
        "import sys; from typer.testing import CliRunner; from strategist.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0 and 'serve' in r.stdout; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'litellm', 'sqlmodel', 'strategist.runtime') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
