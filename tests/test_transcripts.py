"""Importing real transcripts: JSONL and CSV readers, redaction before any model or the database,
and all-or-nothing storage (scripted teacher, offline)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import world
from typer.testing import CliRunner

from strategist.cli import app
from strategist.errors import InputError
from strategist.importers.transcripts import read_csv_text, read_jsonl_text
from strategist.models import FunctionModel, register_model, unregister_model
from strategist.redact import Redactor, luhn_ok

FIXTURES = Path(__file__).parent / "fixtures" / "transcripts"
runner = CliRunner()

EMAIL = "marta.kowalski@example.com"
PHONE = "(503) 555-0199"
CARD = "4242 4242 4242 4242"
ADDRESS = "1207 Alder Street, Apt 3, Portland, OR 97205"
NAME = "Marta Kowalski"
PII = (EMAIL, PHONE, CARD, "4242424242424242", "1207 Alder", "Alder Street", "97205", "Kowalski", "Marta")


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("STRATEGIST_DB", "STRATEGIST_CONFIG", "STRATEGIST_TEACHER_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def teacher():
    """The scripted teacher under ``scripted/teacher``, with a record of every call's messages."""
    seen: list[list[dict]] = []
    inner = world.Teacher(world.HELPFUL)

    def fn(messages, sampling):
        seen.append([dict(m) for m in messages])
        return inner(messages, sampling)

    register_model("scripted/teacher", lambda: FunctionModel(fn, name="scripted/teacher"))
    yield seen
    unregister_model("scripted/teacher")


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _init(cwd):
    assert run("init", "--db", "lib.db").exit_code == 0


def _pii_line(cid: str = "PII-1") -> str:
    return json.dumps(
        {
            "id": cid,
            "outcome": "unresolved",
            "csat": 1,
            "messages": [
                {"role": "system", "content": "You are Northwind's bot."},
                {"role": "user", "content": f"Hi, my name is {NAME}. I was charged twice on my card {CARD}."},
                {"role": "assistant", "content": f"Sorry {NAME.split()[0]}! What's the email on the order?"},
                {
                    "role": "user",
                    "content": f"{EMAIL}, or call me on {PHONE}. Ship the refund note to {ADDRESS}.",
                },
                {"role": "assistant", "content": "I cannot help with double charges."},
            ],
        }
    )


def test_import_jsonl_gives_scenarios_from_the_fixture(cwd, teacher):
    _init(cwd)
    result = run(
        "scenarios",
        "import-transcripts",
        str(FIXTURES / "northwind.jsonl"),
        "--db",
        "lib.db",
        "--teacher",
        "scripted/teacher",
    )
    assert result.exit_code == 0, result.output
    assert "imported 22 conversations" in result.stdout
    db = sqlite3.connect(cwd / "lib.db")
    (n_conv,) = db.execute("select count(*) from conversations where source = 'transcript'").fetchone()
    assert n_conv == 22
    rows = db.execute("select spec from scenarios where origin = 'harvested'").fetchall()
    assert len(rows) >= 10  # near-duplicates of the scripted teacher's near-identical drafts are dropped
    spec = json.loads(rows[0][0])
    assert spec["source"]["kind"] == "transcript" and spec["key"].startswith("transcript:T-")
    linked = db.execute("select count(*) from conversations where scenario_id is not null").fetchone()[0]
    assert linked == len(rows)
    # Importing the same file again adds nothing.
    again = run(
        "scenarios",
        "import-transcripts",
        str(FIXTURES / "northwind.jsonl"),
        "--db",
        "lib.db",
        "--teacher",
        "scripted/teacher",
    )
    assert "imported 0 conversations" in again.stdout and "skipped 22" in again.stdout


def test_personal_data_reaches_neither_a_model_nor_the_database(cwd, teacher):
    _init(cwd)
    (cwd / "pii.jsonl").write_text(_pii_line() + "\n")
    result = run(
        "scenarios", "import-transcripts", "pii.jsonl", "--db", "lib.db", "--teacher", "scripted/teacher"
    )
    assert result.exit_code == 0, result.output
    assert "imported 1 conversations" in result.stdout
    assert teacher, "the teacher was never asked"
    sent = json.dumps(teacher)
    for secret in PII:
        assert secret not in sent, secret
    for tag in ("[EMAIL]", "[PHONE]", "[CARD]", "[ADDRESS]", "[NAME]"):
        assert tag in sent
    # Nothing in any table, nor anywhere in the database file (nor its write-ahead log).
    run("path", "--db", "lib.db")  # closes the store: the WAL is folded back into the file
    raw = b"".join(p.read_bytes() for p in cwd.glob("lib.db*"))
    for secret in PII:
        assert secret.encode() not in raw, secret
    db = sqlite3.connect(cwd / "lib.db")
    (messages, redactions) = db.execute("select messages, redactions from conversations").fetchone()
    assert json.loads(redactions) == {"NAME": 2, "CARD": 1, "EMAIL": 1, "PHONE": 1, "ADDRESS": 1}
    assert "[CARD]" in messages


def test_a_malformed_line_is_one_error_with_its_number_and_nothing_is_imported(cwd, teacher):
    _init(cwd)
    good = _pii_line("A")
    (cwd / "bad.jsonl").write_text(
        good + "\n" + '{"id": "B", "messages": [{"role": "robot", "content": "x"}]}\n'
    )
    result = runner.invoke(
        app,
        ["scenarios", "import-transcripts", "bad.jsonl", "--db", "lib.db", "--teacher", "scripted/teacher"],
    )
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: bad.jsonl: line 2: messages[0].role: Input should be")
    assert len(result.stderr.strip().splitlines()) == 1
    assert teacher == []  # checked before any model call
    assert sqlite3.connect(cwd / "lib.db").execute("select count(*) from conversations").fetchone()[0] == 0

    skipped = run(
        "scenarios",
        "import-transcripts",
        "bad.jsonl",
        "--db",
        "lib.db",
        "--teacher",
        "scripted/teacher",
        "--skip-bad",
    )
    assert skipped.exit_code == 0, skipped.output
    assert "imported 1 conversations" in skipped.stdout
    assert "skipped 1 bad conversations" in skipped.stdout and "line 2" in skipped.stdout


def test_a_teacher_failure_imports_nothing_unless_skip_bad(cwd):
    _init(cwd)

    def broken(messages, sampling):
        return "not json at all"

    register_model("scripted/broken", lambda: FunctionModel(broken, name="scripted/broken"))
    try:
        (cwd / "two.jsonl").write_text(_pii_line("A") + "\n" + _pii_line("B") + "\n")
        result = runner.invoke(
            app,
            [
                "scenarios",
                "import-transcripts",
                "two.jsonl",
                "--db",
                "lib.db",
                "--teacher",
                "scripted/broken",
            ],
        )
        assert result.exit_code == 1 and "nothing was imported" in result.stderr
        db = sqlite3.connect(cwd / "lib.db")
        assert db.execute("select count(*) from conversations").fetchone()[0] == 0
        ok = run(
            "scenarios",
            "import-transcripts",
            "two.jsonl",
            "--db",
            "lib.db",
            "--teacher",
            "scripted/broken",
            "--skip-bad",
        )
        assert ok.exit_code == 0 and "skipped 2 bad conversations" in ok.stdout
    finally:
        unregister_model("scripted/broken")


def test_csv_export_one_row_a_message(cwd, teacher):
    _init(cwd)
    result = run(
        "scenarios",
        "import-transcripts",
        str(FIXTURES / "helpdesk.csv"),
        "--db",
        "lib.db",
        "--teacher",
        "scripted/teacher",
    )
    assert result.exit_code == 0, result.output
    assert "imported 3 conversations" in result.stdout
    db = sqlite3.connect(cwd / "lib.db")
    stored = {k: json.loads(m) for k, m in db.execute("select external_id, messages from conversations")}
    assert [m["role"] for m in stored["H-501"]] == ["user", "assistant", "user", "assistant"]
    assert "[EMAIL]" in stored["H-501"][0]["content"]
    assert stored["H-503"][-1]["content"].startswith(
        "It's going to [ADDRESS]"
    )  # the internal note is left out


def test_readers_name_the_line_and_field():
    with pytest.raises(InputError, match=r"^f.jsonl: line 1: not valid JSON"):
        read_jsonl_text("{oops\n", "f.jsonl")
    with pytest.raises(InputError, match=r"^f.jsonl: line 2: csat: Input should be a valid number"):
        read_jsonl_text(
            _pii_line() + "\n" + json.dumps({**json.loads(_pii_line()), "csat": "great"}), "f.jsonl"
        )
    with pytest.raises(InputError, match=r"line 1: messages: no customer \('user'\) message"):
        read_jsonl_text(json.dumps({"messages": [{"role": "assistant", "content": "Hi"}]}), "f.jsonl")
    with pytest.raises(InputError, match=r"^f.csv: line 1: no text column"):
        read_csv_text("conversation_id,role\n1,user\n", "f.csv")
    with pytest.raises(InputError, match=r"^f.csv: line 3: role: 'robot' is neither"):
        read_csv_text("ticket,author,body\n1,customer,hi\n1,robot,beep\n", "f.csv")
    with pytest.raises(InputError, match=r"^f.csv: line 2: time: 'yesterday' is not an ISO 8601 time"):
        read_csv_text("ticket,author,body,timestamp\n1,customer,hi,yesterday\n", "f.csv")
    out = read_csv_text(
        "ticket,author,body\n1,customer,hi\n1,robot,beep\n2,customer,hey\n2,agent,yes\n",
        "f.csv",
        skip_bad=True,
    )
    assert [t.key for t in out.transcripts] == ["2"] and len(out.errors) == 1


def test_redaction_catches_what_it_says_and_leaves_order_data():
    r = Redactor(keep=["Northwind Outfitters"])
    text = (
        f"This is {NAME}, {EMAIL}, {PHONE}, +44 20 7946 0958, card {CARD}, SSN 123-45-6789, "
        f"{ADDRESS}; also PO Box 1234 and London SW1A 2AA. Order NW-48213 of 2026-03-05, $129.99, "
        "tracking 1Z999AA10123456784, 3 items on the way."
    )
    out = r.redact(text)
    for secret in (*PII, "+44 20", "123-45-6789", "PO Box 1234", "SW1A"):
        assert secret not in out.text, secret
    for kept in ("NW-48213", "2026-03-05", "$129.99", "1Z999AA10123456784", "3 items on the way"):
        assert kept in out.text, kept
    assert out.counts["CARD"] == 1 and out.counts["EMAIL"] == 1 and out.counts["PHONE"] == 2
    assert r.redact("this is Northwind support").text == "this is Northwind support"
    assert r.redact("Order 4111 1111 1111 1112 is not a card").counts["CARD"] == 0  # fails the Luhn check
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    # A name introduced once is removed wherever the conversation repeats it.
    msgs, counts = r.redact_messages(
        [
            {"role": "assistant", "content": "Can I have your full name?"},
            {"role": "user", "content": "Jonas Weber"},
            {
                "role": "assistant",
                "content": "Thanks, Mr Weber.",
                "tool_calls": [
                    {
                        "id": "1",
                        "type": "function",
                        "function": {"name": "find", "arguments": '{"name": "Jonas Weber"}'},
                    }
                ],
            },
        ]
    )
    assert "Weber" not in json.dumps(msgs) and counts["NAME"] == 3
