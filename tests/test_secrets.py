"""API keys never reach the database, exported files, reports or the terminal.

The keys are fake, but they really travel: the customer and the judge are LiteLLMModels talking
to a loopback server that checks the Authorization header and, on some calls, fails with an error
that echoes it (as real providers and proxies do). Every file the commands write, the SQLite
database and its -wal file included, and everything they print is then searched for the keys."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
import world
from sqlmodel import select
from typer.testing import CliRunner

from strategist.cli import app
from strategist.engine.ledger import Ledger
from strategist.errors import REDACTED, ModelError, ModelUnavailableError, one_line, redact_secrets
from strategist.models.litellm_model import LiteLLMModel
from strategist.packs import load_domain
from strategist.store import Store
from strategist.store.tables import LlmCallRow

OPENAI_KEY = "sk-test-FAKE-openai-8c1f0e7d2b9a4e6f"
JUDGE_KEY = "sk-test-FAKE-judge-5d3a9b1c7e2f4a80"
KEYS = (OPENAI_KEY, JUDGE_KEY)


def echo_server_roles() -> dict[str, Any]:
    return {"fake-customer": world.Customer(stop_after=1), "fake-judge": world.judge_fn}


@pytest.fixture
def echo_server(fake_openai):
    """Answers from the scripted world; every fourth request fails with an error quoting its key."""
    return fake_openai(lambda n: "echo-key" if (n + 1) % 4 == 0 else None, roles=echo_server_roles())


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("MY_JUDGE_KEY", JUDGE_KEY)


def _leaks(data: bytes | str) -> list[str]:
    raw = data.encode() if isinstance(data, str) else data
    return [k for k in KEYS if k.encode() in raw or k.encode("utf-16-le") in raw]


def _leaked_files(folder: Path) -> list[Path]:
    """Every file under ``folder``; fails naming the files that hold a key."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    leaked = {str(p.relative_to(folder)): _leaks(p.read_bytes()) for p in files}
    assert not any(leaked.values()), leaked
    return files


@pytest.mark.server
def test_keys_never_reach_files_or_output(tmp_path, monkeypatch, keys, echo_server, scripted):
    monkeypatch.chdir(tmp_path)
    for var in ("STRATEGIST_DB", "STRATEGIST_CONFIG", "STRATEGIST_CUSTOMER_MODEL", "STRATEGIST_JUDGE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    # The customer reads OPENAI_API_KEY (litellm's default); the judge the variable its role names.
    (tmp_path / "strategist.toml").write_text(
        f"""db = "lib.db"

[roles.customer]
model = "openai/fake-customer"
api_base = "{echo_server.url}"
json_mode = "object"
timeout = 10

[roles.judge]
model = "openai/fake-judge"
api_base = "{echo_server.url}"
api_key_env = "MY_JUDGE_KEY"
json_mode = "object"
timeout = 10
""",
        encoding="utf-8",
    )
    runner = CliRunner()
    outputs: list[str] = []

    def run(*args: str) -> Any:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        outputs.extend([result.stdout, result.stderr])
        return result

    assert run("init").exit_code == 0
    grow = run(
        "grow", "--teacher", "scripted/teacher", "--student", "scripted/student", "--scenarios", "2",
        "--generate", "0", "--samples", "2", "--variants", "0", "--regression", "0", "--max-turns", "2",
        "--max-strategies", "1", "--json",
    )  # fmt: skip
    assert grow.exit_code == 0, grow.output
    summary = json.loads(grow.stdout)
    assert summary["failures"] >= 1 and summary["dialogues"] >= 4
    assert run("strategies", "list", "--json", "--status", "pending").exit_code == 0
    assert run("strategies", "export", "library.yaml").exit_code == 0
    assert run("runs", "show", str(summary["run_id"]), "--json").exit_code == 0
    assert run("runs", "list").exit_code == 0
    evaluated = run(
        "eval", "--student", "scripted/student", "--samples", "1", "--max-turns", "1",
        "--report", "report.html", "--include-pending",
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output

    # Searched twice: now, while engines the commands left open may keep recent writes in lib.db-wal,
    # and at the end, once everything is closed.
    _leaked_files(tmp_path)
    # The keys did travel: both in the Authorization header, and echoed back in some errors.
    sent = {auth for _, auth in echo_server.auth}
    assert {f"Bearer {OPENAI_KEY}", f"Bearer {JUDGE_KEY}"} <= sent
    assert echo_server.failed >= 1
    store = Store.open(tmp_path / "lib.db")
    try:
        errors = [r.error or "" for r in _rows(store, LlmCallRow) if not r.ok]
        assert errors and all(REDACTED in e for e in errors), errors
        # Failed dialogues and judgings are events; their error text is in the message or the detail.
        failures = [f"{e.message} {json.dumps(e.detail)}" for e in store.events(summary["run_id"])]
        assert failures and all(REDACTED in f for f in failures if "model error" in f or "judging" in f)
        assert any(REDACTED in (d.error or "") for d, _ in _dialogues(store, summary["run_id"]))
    finally:
        store.close()
    gc.collect()  # the commands' engines close: the -wal content is checkpointed into lib.db
    names = {p.name for p in _leaked_files(tmp_path)}
    assert {"lib.db", "library.yaml", "report.html", "strategist.toml"} <= names
    assert not any(_leaks(o) for o in outputs)


# -- the adapter itself ---------------------------------------------------------------------------------
@pytest.mark.server
@pytest.mark.parametrize("status", [400, 401, 500])
async def test_key_is_sent_but_never_stored_when_a_call_fails(tmp_path, monkeypatch, status, fake_openai):
    """The key goes in the Authorization header; the server's error quotes it; the ledger row and the
    run's event hold the error without it. The variable's name does not look secret (no KEY or
    TOKEN in it), so only the adapter knows what to blank out."""
    secret = "sk-test-FAKE-adapter-0f9e8d7c6b5a"
    monkeypatch.setenv("STRATEGIST_JUDGE_AUTH", secret)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = fake_openai(lambda n: "echo-key", roles=echo_server_roles(), error_status=status)
    store = Store.open(tmp_path / "lib.db")
    try:
        store.upsert_domain(_domain())
        run_id = store.start_run("northwind", "grow", {})
        model = LiteLLMModel(
            "openai/fake-judge",
            api_base=server.url,
            api_key_env="STRATEGIST_JUDGE_AUTH",
            timeout=10,
            retries=0,
        )
        ledgered = Ledger(store, run_id).wrap(model, "judge")
        with pytest.raises((ModelError, ModelUnavailableError)) as info:
            await ledgered.complete([{"role": "user", "content": "hi"}])
        store.record_event(run_id, "failure", f"judging dialogue 1: {one_line(info.value)}")
        assert server.auth[0][1] == f"Bearer {secret}"
        assert secret not in str(info.value) and REDACTED in str(info.value)
        [row] = [r for r in _rows(store, LlmCallRow) if not r.ok]
        assert row.error and REDACTED in row.error and secret not in row.error
        assert all(secret not in e.message for e in store.events(run_id))
    finally:
        store.close()
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes(), p


def _domain() -> Any:
    return load_domain(Path(__file__).resolve().parent.parent / "scenarios" / "northwind" / "domain.yaml")


def _dialogues(store: Any, run_id: int) -> list[Any]:
    return [(d, j) for _, d, j in store.run_dialogues(run_id)]


def _rows(store: Any, table: Any) -> list[Any]:
    with store.session() as s:
        return list(s.exec(select(table)))


# -- redaction ------------------------------------------------------------------------------------------
def test_redaction_blanks_secret_environment_values(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-FAKE-1234567890")
    monkeypatch.setenv("HF_TOKEN", "hf_FAKEFAKEFAKE")
    monkeypatch.setenv("SHORT_KEY", "none")  # a placeholder, not a secret: too short to blank out
    monkeypatch.setenv("STRATEGIST_DB", "sk-ant-FAKE-1234567890-not-secret-by-name")
    text = "401: key sk-ant-FAKE-1234567890 and hf_FAKEFAKEFAKE rejected; none left"
    assert redact_secrets(text) == f"401: key {REDACTED} and {REDACTED} rejected; none left"
    assert one_line(RuntimeError("bad\nkey sk-ant-FAKE-1234567890")) == f"bad key {REDACTED}"
    assert redact_secrets("sent abcdefgh12345678", ["abcdefgh12345678", None, ""]) == f"sent {REDACTED}"
