"""Releases on SQLite and PostgreSQL: immutable snapshots, promotion and rollback of labels, the
trail, two promoters at once, and a library pinned to a release."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from runtime_library import CONVERSATIONS, add_strategies
from typer.testing import CliRunner

from strategist.audit.lifecycle import ConflictError, ReviewRequest, Text
from strategist.cli import app as cli
from strategist.errors import NotFoundError, StrategistError
from strategist.runtime import StrategyLibrary
from strategist.store import Store, migrations
from strategist.store.releases import ReleaseError


def _approve(store, sid):
    store.review(ReviewRequest(sid, "approve", "ana"))


def test_create_promote_rollback_and_the_trail(any_store, northwind):
    ids = add_strategies(any_store, northwind)
    approved = sorted(r.id for r in any_store.list_strategies(statuses=["approved"]))
    r1 = any_store.create_release("r1", actor="ana", note="first")
    assert r1.size == len(approved)
    assert [(s.strategy_id, s.version) for s in any_store.released_strategies(r1.id)] == [
        (i, 1) for i in approved
    ]

    # The live library moves on; the release does not.
    _approve(any_store, ids["discount"])
    edited = any_store.review(
        ReviewRequest(
            ids["late_refund"],
            "edit",
            "bo",
            text=Text("Late refund, new words", "Offer credit."),
            approve=True,
        )
    )
    assert edited.version == 2
    any_store.review(ReviewRequest(ids["backorder"], "retire", "bo", note="wrong"))
    r1_now = any_store.released_strategies(r1.id)
    assert [(s.strategy_id, s.version) for s in r1_now] == [(i, 1) for i in approved]
    late = next(s for s in r1_now if s.strategy_id == ids["late_refund"])
    assert late.trigger.startswith("A customer asks for a card refund")  # the words of v1

    r2 = any_store.create_release("r2", actor="bo")
    with pytest.raises(ReleaseError, match="exists already"):
        any_store.create_release("r2", actor="bo")
    assert any_store.label_target("production") is None
    any_store.promote_release("r1", "production", actor="ana", note="go")
    any_store.promote_release("r2", "production", actor="bo")
    assert any_store.label_target("production") == r2.id
    back = any_store.rollback_label("production", actor="cy", note="r2 hurts refunds")
    assert back.release_id == r1.id and any_store.label_target("production") == r1.id
    with pytest.raises(ReleaseError, match="no earlier release"):
        any_store.rollback_label("production", actor="cy")
    with pytest.raises(NotFoundError):
        any_store.rollback_label("staging", actor="cy")
    with pytest.raises(NotFoundError):
        any_store.promote_release("r9", "production", actor="cy")

    trail = [
        (a.action, a.label, a.release_id, a.previous_release_id, a.actor) for a in any_store.release_actions()
    ]
    assert trail == [
        ("created", None, r1.id, None, "ana"),
        ("created", None, r2.id, None, "bo"),
        ("promoted", "production", r1.id, None, "ana"),
        ("promoted", "production", r2.id, r1.id, "bo"),
        ("rolled_back", "production", r1.id, r2.id, "cy"),
    ]
    assert all(a.created_at is not None for a in any_store.release_actions())
    assert any_store.resolve_release("production")[0].name == "r1"
    assert any_store.resolve_release("r2") == (any_store.get_release("r2"), None)


def test_two_promoters_at_once_leave_the_label_on_one_whole_release(any_db, northwind):
    store = Store.open(any_db)
    try:
        add_strategies(store, northwind)
        base = store.create_release("base", actor="x")
        store.promote_release("base", "production", actor="x")
        names = [f"c{i}" for i in range(6)]
        for n in names:
            store.create_release(n, actor="x")
    finally:
        store.close()
    outcomes: list[str] = []
    start = threading.Barrier(len(names))

    def promote(name: str) -> None:
        s = Store.open(any_db)
        try:
            start.wait()
            s.promote_release(name, "production", actor=name, seen=base.id)
            outcomes.append("ok")
        except ConflictError as exc:
            assert "nothing was changed" in str(exc)
            outcomes.append("conflict")
        finally:
            s.close()

    threads = [threading.Thread(target=promote, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["conflict"] * (len(names) - 1) + ["ok"]
    store = Store.open(any_db)
    try:
        target = store.release_by_id(store.label_target("production"))
        assert target.name in names
        assert len(store.released_strategies(target.id)) == target.size
        promotions = [a for a in store.release_actions(label="production") if a.action == "promoted"]
        assert [a.actor for a in promotions] == ["x", target.name]  # exactly the one that won
    finally:
        store.close()


def test_a_release_that_fails_half_way_leaves_nothing_and_a_short_one_cannot_be_promoted(
    any_store, northwind
):
    add_strategies(any_store, northwind)

    def fail_on_members(conn, cursor, statement, *args):
        if "INSERT INTO release_strategies" in statement:
            raise RuntimeError("disk full")

    sa.event.listen(any_store.engine, "before_cursor_execute", fail_on_members)
    try:
        with pytest.raises(RuntimeError):
            any_store.create_release("broken", actor="x")
    finally:
        sa.event.remove(any_store.engine, "before_cursor_execute", fail_on_members)
    assert any_store.list_releases() == [] and any_store.release_actions() == []
    with pytest.raises(NotFoundError):
        any_store.promote_release("broken", "production", actor="x")
    # A release whose rows are not all there (written by other means) is never promoted.
    r = any_store.create_release("r", actor="x")
    with any_store.engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM release_strategies WHERE release_id = :r AND strategy_id = 1"), {"r": r.id}
        )
    with pytest.raises(ReleaseError, match="cannot be promoted"):
        any_store.promote_release("r", "production", actor="x")
    assert any_store.label_target("production") is None


def test_a_pinned_library_ranks_exactly_the_release_until_the_label_moves(any_db, northwind):
    store = Store.open(any_db)
    ids = add_strategies(store, northwind)
    store.create_release("r1", actor="x")
    store.promote_release("r1", "production", actor="x")
    late = CONVERSATIONS["late_refund"]
    library = StrategyLibrary.open(any_db, domain="northwind", release="production")
    library.ranker.check_every = 0.0  # look at the label on every retrieval
    try:
        before = library.retrieve(late)
        assert before.release == "r1" and f"strategy:{ids['late_refund']}@v1" in before.refs
        # A new approval and an edit of an approved strategy change the live set, not the release.
        _approve(store, ids["discount"])
        store.review(
            ReviewRequest(
                ids["late_refund"],
                "edit",
                "bo",
                text=Text("Late refund to the card", "New v2."),
                approve=True,
            )
        )
        live = StrategyLibrary.open(any_db, domain="northwind")
        assert f"strategy:{ids['late_refund']}@v2" in live.retrieve(late).refs
        live.close()
        assert library.retrieve(late).refs == before.refs
        discount = [{"role": "user", "content": "Give me a discount code or coupon!"}]
        assert f"strategy:{ids['discount']}@v1" not in library.retrieve(discount).refs
        # Promoted: the pinned library follows the label.
        store.create_release("r2", actor="x")
        store.promote_release("r2", "production", actor="x")
        after = library.retrieve(late)
        assert after.release == "r2" and f"strategy:{ids['late_refund']}@v2" in after.refs
        assert f"strategy:{ids['discount']}@v1" in library.retrieve(discount).refs
        store.rollback_label("production", actor="x")
        assert library.retrieve(late).refs == before.refs
        with pytest.raises(StrategistError, match="approved strategies only"):
            library.retrieve(late, include_pending=True)
    finally:
        library.close()
        store.close()
    with pytest.raises(NotFoundError, match="no release label or release named 'nope'"):
        StrategyLibrary.open(any_db, release="nope")


def test_release_commands(tmp_path, monkeypatch, northwind):
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "lib.db")
    store = Store.open(db)
    ids = add_strategies(store, northwind)
    store.close()
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(cli, [*args, "--db", db])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "release 'r1': 5 approved strategies, created by ana" in run(
        "release", "create", "r1", "--reviewer", "ana"
    )
    run("release", "promote", "r1", "--label", "production", "--reviewer", "ana")
    run("strategies", "approve", str(ids["discount"]), "--reviewer", "bo")
    run("release", "create", "r2", "--note", "adds discounts", "--reviewer", "bo")
    diff = run("release", "diff", "r1", "r2")
    assert "1 added, 0 removed, 0 at another version" in diff and f"strategy:{ids['discount']}@v1" in diff
    assert "label production: r1 -> r2 (promoted by bo)" in run(
        "release", "promote", "r2", "--label", "production", "--reviewer", "bo"
    )
    assert "label production: r2 -> r1 (rolled back by cy)" in run(
        "release", "rollback", "--label", "production", "--reviewer", "cy", "--note", "bad"
    )
    listed = run("release", "list")
    assert "label production -> r1 (by cy" in listed
    shown = run("release", "show", "production")
    assert "release 'r1' (label 'production')" in shown and "rolled back" in shown
    history = run("release", "history", "--label", "production")
    assert history.count("promoted") == 2 and "cy" in history
    failed = runner.invoke(cli, ["release", "create", "r1", "--db", db])
    assert failed.exit_code == 1 and "exists already" in failed.stderr


def test_the_new_tables_migrate_from_the_previous_schema(tmp_path, northwind):
    """A database left by the previous version (up to m006) gets m007 and m008 and keeps its rows."""
    path = tmp_path / "old.db"
    store = Store.open(path, migrate=False)
    assert migrations.migrate(store.engine, until="m006_domain_source")[-1] == "m006_domain_source"
    insp = sa.inspect(store.engine)
    assert not insp.has_table("conversations") and not insp.has_table("releases")
    store.upsert_domain(northwind)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO strategies (domain_id, "trigger", guidance, example, status, version, '
                "provenance, evidence, times_retrieved, created_at, updated_at) VALUES ('northwind', "
                "'When a customer asks', 'Do it', '', 'approved', 1, '{}', '{}', 0, "
                "'2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(
            sa.text(
                'INSERT INTO strategy_versions (strategy_id, version, "trigger", guidance, example, author, '
                "created_at) VALUES (1, 1, 'When a customer asks', 'Do it', '', 'old', '2026-01-01')"
            )
        )
    assert store.migrate() == ["m007_conversations", "m008_releases", "m009_judgement_parts"]
    r = store.create_release("first", actor="x")
    assert [s.ref for s in store.released_strategies(r.id)] == ["strategy:1@v1"]
    store.count_outcomes([(1, 1)], poor=False)
    assert store.strategy_outcomes() == {1: {1: (1, 0)}}
    store.close()
