"""The review lifecycle, the optimistic version check and the policy check, on a real SQLite file."""

from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa
from auditkit import SECOND, add, policy_judge

from strategist.audit.lifecycle import (
    ConflictError,
    ReviewRequest,
    Text,
    TransitionError,
    action_between,
    default_reviewer,
    next_status,
)
from strategist.audit.policy import PolicyChecker, policy_flag
from strategist.errors import StrategistError
from strategist.models import FunctionModel, ScriptedModel
from strategist.store import Store

NEW = Text("When a customer asks about a late refund", "Explain rule 4 and offer store credit.", "")


@pytest.fixture
def lib(store, northwind):
    store.upsert_domain(northwind)
    return store


def req(sid: int, action: str, **kw) -> ReviewRequest:
    kw.setdefault("reviewer", "alice")
    return ReviewRequest(sid, action, **kw)


# -- the rules ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "status", "approve", "after"),
    [
        ("approve", "pending", False, "approved"),
        ("reject", "pending", False, "rejected"),
        ("retire", "approved", False, "retired"),
        ("edit", "pending", False, "pending"),
        ("edit", "approved", False, "pending"),
        ("edit", "approved", True, "approved"),
        ("edit", "pending", True, "approved"),
    ],
)
def test_allowed_transitions(action, status, approve, after):
    assert next_status(action, status, approve=approve) == after


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("approve", "approved"),
        ("approve", "rejected"),
        ("approve", "retired"),
        ("reject", "approved"),
        ("retire", "pending"),
        ("retire", "rejected"),
        ("edit", "rejected"),
        ("edit", "retired"),
    ],
)
def test_forbidden_transitions(action, status):
    with pytest.raises(TransitionError, match=f"is {status}"):
        next_status(action, status, strategy_id=7)


def test_action_between_statuses():
    assert action_between("pending", "approved") == "approve"
    assert action_between("approved", "retired") == "retire"
    assert action_between("approved", "pending") is None
    assert action_between("retired", "approved") is None


def test_reviewer_comes_from_git_then_user():
    assert default_reviewer({"USER": "carol"}, lambda: "Dana Git") == "Dana Git"
    assert default_reviewer({"USER": "carol"}, lambda: None) == "carol"
    assert default_reviewer({}, lambda: None) == "unknown"


# -- actions in the store -------------------------------------------------------------------------
def test_approve_writes_a_review_record(lib):
    s = add(lib)
    row = lib.review(req(s.id, "approve", note="matches rule 7"))
    assert (row.status, row.version) == ("approved", 1)
    created, approved = lib.reviews(s.id)
    assert created.action == "created"
    assert (approved.action, approved.reviewer, approved.note, approved.version) == (
        "approved",
        "alice",
        "matches rule 7",
        1,
    )
    assert approved.before == {**SECOND, "status": "pending", "version": 1}
    assert approved.after == {**SECOND, "status": "approved", "version": 1}
    assert approved.created_at is not None


def test_reject_and_retire_need_a_note(lib):
    s = add(lib)
    with pytest.raises(TransitionError, match="note is required"):
        lib.review(req(s.id, "reject", note="  "))
    assert lib.get_strategy(s.id).status == "pending"
    lib.review(req(s.id, "approve"))
    with pytest.raises(TransitionError, match="note is required"):
        lib.review(req(s.id, "retire"))
    row = lib.review(req(s.id, "retire", note="policy changed"))
    assert row.status == "retired"
    assert [r.action for r in lib.reviews(s.id)] == ["created", "approved", "retired"]


def test_forbidden_actions_write_nothing(lib):
    s = add(lib)
    with pytest.raises(TransitionError):
        lib.review(req(s.id, "retire", note="x"))
    lib.review(req(s.id, "reject", note="off-policy"))
    for action in ("approve", "edit"):
        with pytest.raises(TransitionError):
            lib.review(req(s.id, action, text=NEW, note="x"))
    row = lib.get_strategy(s.id)
    assert (row.status, row.version, row.trigger) == ("rejected", 1, SECOND["trigger"])
    assert len(lib.reviews(s.id)) == 2 and len(lib.strategy_versions(s.id)) == 1


def test_edit_makes_a_version_and_sends_approved_back_to_pending(lib):
    s = add(lib)
    lib.review(req(s.id, "approve"))
    row = lib.review(req(s.id, "edit", reviewer="bob", note="tighter", text=NEW))
    assert (row.status, row.version, row.trigger, row.guidance) == ("pending", 2, NEW.trigger, NEW.guidance)
    v1, v2 = lib.strategy_versions(s.id)
    assert (v1.version, v1.author, v1.trigger) == (1, "gate", SECOND["trigger"])  # the old words are kept
    assert (v2.version, v2.author, v2.trigger) == (2, "bob", NEW.trigger)
    last = lib.reviews(s.id)[-1]
    assert (last.action, last.version, last.note) == ("edited", 2, "tighter")
    assert last.before["guidance"] == SECOND["guidance"] and last.before["status"] == "approved"
    assert last.after["guidance"] == NEW.guidance and last.after["status"] == "pending"


def test_edit_and_approve_in_one_action(lib):
    s = add(lib)
    lib.review(req(s.id, "approve"))
    row = lib.review(req(s.id, "edit", text=NEW, approve=True))
    assert (row.status, row.version) == ("approved", 2)
    assert [r.action for r in lib.reviews(s.id)] == ["created", "approved", "edited"]


def test_edit_that_changes_nothing_is_refused(lib):
    s = add(lib)
    with pytest.raises(TransitionError, match="changes nothing"):
        lib.review(req(s.id, "edit", text=Text(**SECOND)))
    assert lib.get_strategy(s.id).version == 1


# -- two reviewers, one version ------------------------------------------------------------------------
@pytest.fixture
def two(tmp_path, northwind):
    path = tmp_path / "shared.db"
    a, b = Store.open(path), Store.open(path)
    a.upsert_domain(northwind)
    yield a, b
    a.close()
    b.close()


def test_second_reviewer_on_the_same_version_gets_a_conflict(two):
    a, b = two
    sid = add(a).id
    seen_a, seen_b = a.get_strategy(sid), b.get_strategy(sid)  # both look at version 1, pending
    a.review(req(sid, "approve", seen_version=seen_a.version, seen_status=seen_a.status))
    with pytest.raises(ConflictError) as info:
        b.review(
            req(
                sid,
                "reject",
                reviewer="bob",
                note="no",
                seen_version=seen_b.version,
                seen_status=seen_b.status,
            )
        )
    msg = str(info.value)
    assert isinstance(info.value, StrategistError) and "\n" not in msg
    assert "you saw version 1 (pending)" in msg and "now version 1 (approved" in msg and "alice" in msg
    assert a.get_strategy(sid).status == "approved"
    assert [r.action for r in a.reviews(sid)] == ["created", "approved"]


def test_second_editor_does_not_overwrite_the_first(two):
    a, b = two
    sid = add(a).id
    a.review(req(sid, "edit", text=NEW, seen_version=1, seen_status="pending"))
    other = Text("When anything happens", "Do something else entirely.", "")
    with pytest.raises(ConflictError, match="you saw version 1"):
        b.review(req(sid, "edit", reviewer="bob", text=other, seen_version=1, seen_status="pending"))
    row = b.get_strategy(sid)
    assert (row.version, row.trigger) == (2, NEW.trigger)
    assert [v.author for v in b.strategy_versions(sid)] == ["gate", "alice"]


def test_the_update_itself_refuses_a_stale_version(two):
    """Even when the pre-read is stale (the other write landed in between), the guarded UPDATE holds."""
    a, b = two
    sid = add(a).id
    raced: list[str] = []

    def other_reviewer_first(conn, cursor, statement, *args):
        # Just before bob's UPDATE, after his read found version 1 pending: alice approves.
        if statement.startswith("UPDATE strategies") and not raced:
            raced.append(statement)
            a.review(req(sid, "approve"))

    sa.event.listen(b.engine, "before_cursor_execute", other_reviewer_first)
    with pytest.raises(ConflictError, match="changed since you looked"):
        b.review(req(sid, "reject", reviewer="bob", note="no", seen_version=1, seen_status="pending"))
    assert len(raced) == 1  # the read passed the check; the UPDATE then matched nothing
    assert a.get_strategy(sid).status == "approved"
    assert [r.reviewer for r in a.reviews(sid)] == ["gate", "alice"]


def test_bulk_actions_are_all_or_nothing(two):
    a, b = two
    first, second = add(a).id, add(a, text={**SECOND, "trigger": "When a second thing happens"}).id
    b.review(req(second, "reject", reviewer="bob", note="no"))
    with pytest.raises(ConflictError):
        a.review_many(
            [
                req(first, "approve", seen_version=1, seen_status="pending"),
                req(second, "approve", seen_version=1, seen_status="pending"),
            ]
        )
    assert a.get_strategy(first).status == "pending"
    assert [r.action for r in a.reviews(first)] == ["created"]


# -- the policy check --------------------------------------------------------------------------------
def test_policy_check_sends_policy_and_strategy_and_returns_the_verdict(northwind):
    model = FunctionModel(policy_judge(), name="scripted/judge")
    text = Text("When a customer is angry", "Promise PROMISE-EVERYTHING to calm them.", "All yours.")
    result = asyncio.run(PolicyChecker(model).check(northwind, text, version=3))
    assert result["conflict"] is True and result["clause"].startswith("19.")
    assert (result["model"], result["version"]) == ("scripted/judge", 3)
    assert result["checked_at"].endswith("Z")
    [call] = model.calls
    assert "Items may be returned for a refund within 30 days" in call.last  # the domain's policy
    assert "Promise PROMISE-EVERYTHING" in call.last and "When: When a customer is angry" in call.last
    assert '"conflict"' in call.last  # the schema it must answer with
    assert call.sampling.json_schema and json.loads(call.sampling.json_schema)["required"] == ["conflict"]


def test_policy_check_reasks_after_invalid_output(northwind):
    model = ScriptedModel(["I think it is fine", '{"conflict": false, "clause": "", "explanation": "fine"}'])
    result = asyncio.run(PolicyChecker(model).check(northwind, NEW, version=1))
    assert result["conflict"] is False and len(model.calls) == 2
    assert "could not be used" in model.calls[1].last


def test_policy_flag_labels(lib):
    s = add(lib)
    assert policy_flag(None, 1) == "-"
    lib.set_policy_check(s.id, {"conflict": True, "clause": "rule 7", "explanation": "x", "version": 1})
    row = lib.get_strategy(s.id)
    assert policy_flag(row.policy_check, row.version) == "CONFLICT: rule 7"
    row = lib.review(req(s.id, "edit", text=NEW))
    assert policy_flag(row.policy_check, row.version) == "CONFLICT: rule 7 (checked v1)"
    assert policy_flag({"conflict": False, "version": 2}, 2) == "ok"
