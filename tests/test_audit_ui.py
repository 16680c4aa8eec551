"""The audit web page: token, list filters, escaping, the review forms and their conflict check,
and one end-to-end run in headless Chromium (Debian's package)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from auditkit import add, grow_one

from strategist.audit.lifecycle import ReviewRequest, Text
from strategist.store import Store

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from strategist.audit_ui.app import COOKIE, create_app  # noqa: E402

TOKEN = "test-token-123"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def lib(store, northwind):
    domain = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(domain)
    grow_one(store, domain)
    return store


@pytest.fixture
def client(lib):
    c = TestClient(create_app(lib, token=TOKEN, reviewer="web-reviewer"))
    c.cookies.set(COOKIE, TOKEN)
    return c


def form(row, **kw):
    return {"version": str(row.version), "status": row.status, **kw}


def test_every_request_needs_the_token(lib):
    c = TestClient(create_app(lib, token=TOKEN, reviewer="x"))
    for path in ("/", "/strategies/1", "/?token=wrong"):
        assert c.get(path).status_code == 401
    assert c.post("/strategies/1/approve", data={"version": "1", "status": "pending"}).status_code == 401
    assert lib.get_strategy(1).status == "pending"
    first = c.get(f"/strategies/1?token={TOKEN}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].endswith(
        "/strategies/1"
    )  # token leaves the URL
    cookie = first.headers["set-cookie"]
    assert f"{COOKIE}={TOKEN}" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert c.get("/strategies/1").status_code == 200  # the cookie now carries it
    forged = TestClient(create_app(lib, token=TOKEN, reviewer="x"))
    forged.cookies.set(COOKIE, "forged")
    assert forged.get("/").status_code == 401


def test_a_form_sent_from_another_site_is_refused(client, lib):
    r = client.post(
        "/strategies/1/approve", data=form(lib.get_strategy(1)), headers={"origin": "http://evil.example"}
    )
    assert r.status_code == 403 and lib.get_strategy(1).status == "pending"


def test_list_filters_by_status_domain_and_policy(client, lib):
    other = add(lib, text={"trigger": "When <script>alert(1)</script> appears", "guidance": "Stay calm."})
    lib.set_policy_check(other.id, {"conflict": True, "clause": "rule <b>7</b>", "version": 1})
    page = client.get("/").text
    assert 'id="strategy-1"' in page and f'id="strategy-{other.id}"' in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "CONFLICT: rule &lt;b&gt;7&lt;/b&gt;" in page
    flagged = client.get("/?policy=conflict").text
    assert f'id="strategy-{other.id}"' in flagged and 'id="strategy-1"' not in flagged
    assert 'id="strategy-1"' in client.get("/?policy=unchecked").text
    lib.review(ReviewRequest(1, "approve", "a"))
    approved = client.get("/?status=approved&domain=northwind").text
    assert 'id="strategy-1"' in approved and f'id="strategy-{other.id}"' not in approved
    assert "no strategies match" in client.get("/?domain=elsewhere").text


def test_strategy_page_shows_evidence_and_dialogues_side_by_side(client):
    page = client.get("/strategies/1").text
    assert "mean paired gain" in page and "paired evidence" in page
    assert "without the strategy: dialogue" in page and "with the strategy: dialogue" in page
    assert "judge: Offered store credit." in page
    assert 'name="version" value="1"' in page and 'id="approve"' in page and 'id="reject"' in page
    assert client.get("/strategies/99").status_code == 404


def test_strategy_page_shows_the_evidence_from_production(client, lib):
    assert "in no judged captured conversation yet" in client.get("/strategies/1").text
    lib.count_outcomes([(1, 1)], poor=False)
    lib.count_outcomes([(1, 1)], poor=True)
    lib.count_outcomes([(1, 1)], poor=False)
    assert "in 3 judged captured conversations: 2 good, 1 poor" in client.get("/strategies/1").text


def test_approve_then_a_stale_form_gets_a_conflict(client, lib):
    seen = lib.get_strategy(1)
    ok = client.post(
        "/strategies/1/approve", data=form(seen, note="good", reviewer="ana"), follow_redirects=False
    )
    assert ok.status_code == 303
    assert lib.get_strategy(1).status == "approved"
    last = lib.reviews(1)[-1]
    assert (last.action, last.reviewer, last.note) == ("approved", "ana", "good")
    stale = client.post("/strategies/1/reject", data=form(seen, note="no"))
    assert stale.status_code == 409
    assert "changed since you looked at it" in stale.text
    assert lib.get_strategy(1).status == "approved"


def test_reject_needs_a_note_and_edit_makes_a_version(client, lib):
    seen = lib.get_strategy(1)
    r = client.post("/strategies/1/reject", data=form(seen, note=" "))
    assert r.status_code == 400 and "note is required" in r.text
    r = client.post(
        "/strategies/1/edit",
        data=form(
            seen, trigger=seen.trigger, guidance="Offer store credit (rule 4).", example="", approve="1"
        ),
    )
    assert r.status_code == 200  # followed the redirect back to the page
    row = lib.get_strategy(1)
    assert (row.status, row.version, row.guidance) == ("approved", 2, "Offer store credit (rule 4).")
    assert lib.reviews(1)[-1].reviewer == "web-reviewer"  # the server's default reviewer
    assert client.post("/strategies/1/frobnicate", data=form(row)).status_code == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)")
def test_approve_in_headless_chromium(tmp_path, northwind):
    sync_api = pytest.importorskip("playwright.sync_api")
    uvicorn = pytest.importorskip("uvicorn")
    path = tmp_path / "ui.db"
    store = Store.open(path)
    store.upsert_domain(northwind)
    sid = add(store).id
    store.review(
        ReviewRequest(sid, "edit", "gate", "", text=Text("When a final-sale item is returned", "Say no."))
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store, token=TOKEN, reviewer="browser"),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            try:
                page = browser.new_page()
                page.set_default_timeout(15_000)
                page.goto(f"http://127.0.0.1:{port}/?token={TOKEN}")
                assert "token" not in page.url  # moved into the cookie
                page.click(f"#strategy-{sid}")
                page.fill("#approve-note", "checked against rule 7")
                page.fill("#approve-reviewer", "ana from support")
                page.click("#approve")
                page.wait_for_selector("#message")
                assert page.inner_text("#status") == "approved"
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    check = Store.open(path)  # a separate connection: what the database really holds
    try:
        row = check.get_strategy(sid)
        assert (row.status, row.version) == ("approved", 2)
        last = check.reviews(sid)[-1]
        assert (last.action, last.reviewer, last.note) == (
            "approved",
            "ana from support",
            "checked against rule 7",
        )
    finally:
        check.close()
        store.close()
