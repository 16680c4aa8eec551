"""The audit page's errors are its own HTML page (oversized forms, invalid forms, unknown paths),
and a failed ``strategist init`` leaves no database file behind."""

from __future__ import annotations

import re

import pytest
from auditkit import add
from typer.testing import CliRunner

from strategist.cli import app as cli

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from strategist.audit_ui.app import COOKIE, create_app  # noqa: E402

TOKEN = "test-token-123"


@pytest.fixture
def lib(store, northwind):
    store.upsert_domain(northwind)
    add(store)
    return store


def _client(store, **kw) -> TestClient:
    c = TestClient(create_app(store, token=TOKEN, reviewer="web-reviewer", **kw))
    c.cookies.set(COOKIE, TOKEN)
    return c


def _error_page(r) -> str:
    """The message of the page's own error page (and fail if it is anything else)."""
    assert r.headers["content-type"].startswith("text/html"), r.text[:300]
    assert '<header><a href="/">strategist audit</a></header>' in r.text
    found = re.search(r'<p class="error">(.*?)</p>', r.text, re.S)
    assert found, r.text[:300]
    return found.group(1)


def test_a_5_mb_form_field_gets_the_pages_413(lib):
    row = lib.get_strategy(1)
    r = _client(lib).post(
        f"/strategies/{row.id}/reject", data={"version": "1", "status": "pending", "note": "x" * 5_000_000}
    )
    assert r.status_code == 413
    message = _error_page(r)
    assert "larger than this page accepts (1024 KiB)" in message and "xxxx" not in r.text
    assert lib.get_strategy(row.id).status == "pending"


def test_a_body_without_a_length_is_cut_off_at_the_limit(lib):
    def chunks():
        yield b"version=1&status=pending&note="
        for _ in range(3):
            yield b"y" * 600

    r = _client(lib, max_body_bytes=1000).post(
        "/strategies/1/reject",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413
    assert "larger than this page accepts (1000 bytes)" in _error_page(r)
    assert lib.get_strategy(1).status == "pending"


def test_a_form_under_the_limit_still_works(lib):
    from strategist.audit_ui.app import MAX_BODY_BYTES

    assert MAX_BODY_BYTES == 1024 * 1024
    r = _client(lib).post(
        "/strategies/1/reject",
        data={"version": "1", "status": "pending", "note": "too vague " * 1000},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert lib.get_strategy(1).status == "rejected"


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"status": "pending"}, "version"),
        ({"version": "abc", "status": "pending"}, "version"),
        ({}, "version"),
    ],
)
def test_an_invalid_form_gets_the_pages_400(lib, form, field):
    r = _client(lib).post("/strategies/1/approve", data=form)
    assert r.status_code == 400
    message = _error_page(r)
    assert message.startswith("the form is incomplete or invalid") and field in message
    assert '"detail"' not in r.text
    assert lib.get_strategy(1).status == "pending"


def test_unknown_paths_and_methods_get_the_pages_error_page(lib):
    c = _client(lib)
    r = c.get("/no/such/page")
    assert r.status_code == 404 and "Not Found" in _error_page(r)
    r = c.get("/strategies/1/approve")
    assert r.status_code == 405 and _error_page(r) and "allow" in r.headers


# -- init --------------------------------------------------------------------------------------------
BAD_PACK = "id: broken\nname: Broken\npolicy: [unclosed\n"


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("STRATEGIST_DB", "STRATEGIST_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_a_failed_init_leaves_no_database_behind(cwd):
    (cwd / "bad.yaml").write_text(BAD_PACK)
    result = CliRunner().invoke(cli, ["init", "--db", "new.db", "--domain", "bad.yaml"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "bad.yaml" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in cwd.iterdir()) == ["bad.yaml"]  # no new.db, no -wal/-shm, no toml


def test_a_failed_init_keeps_a_database_that_was_there(cwd):
    ok = CliRunner().invoke(cli, ["init", "--db", "lib.db"])
    assert ok.exit_code == 0, ok.output
    before = (cwd / "lib.db").stat().st_size
    (cwd / "bad.yaml").write_text(BAD_PACK)
    result = CliRunner().invoke(cli, ["init", "--db", "lib.db", "--domain", "bad.yaml"])
    assert result.exit_code == 1
    assert (cwd / "lib.db").is_file() and (cwd / "lib.db").stat().st_size >= before
    listed = CliRunner().invoke(cli, ["domains", "list", "--db", "lib.db"])
    assert listed.exit_code == 0 and "northwind" in listed.stdout
