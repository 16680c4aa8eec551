"""The library file: deterministic export, validated import as reviewed actions, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from auditkit import SECOND, add, grow_one

from strategist.audit.exchange import (
    dump_library,
    export_evidence,
    parse_library,
    plan_import,
    strategy_entry,
)
from strategist.audit.lifecycle import ConflictError, ReviewRequest, Text
from strategist.errors import InputError
from strategist.store import Store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "strategies" / "northwind-example.yaml"


def export(store: Store, statuses=None) -> str:
    rows = store.list_strategies(None, statuses)
    versions = store.versions_by_strategy([r.id for r in rows])
    return dump_library([strategy_entry(r, versions[r.id]) for r in rows])


def do_import(store: Store, text: str, source: str = "lib.yaml", reviewer: str = "importer"):
    lib, where = parse_library(text, source)
    known = {d.id for d in store.list_domains()}
    plan = plan_import(
        lib,
        where,
        source,
        store.current_states(e.id for e in lib.strategies if e.id is not None),
        lambda d: d in known,
        reviewer=reviewer,
        note=f"imported from {source}",
    )
    store.apply_import(plan.creates, plan.reviews, reviewer=reviewer, note=f"imported from {source}")
    return plan


@pytest.fixture
def domain(store, northwind):
    d = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(d)
    return d


@pytest.fixture
def reviewed(store, domain):
    """A grown strategy, approved then edited and approved again, plus a rejected one."""
    grown = grow_one(store, domain)
    store.review(ReviewRequest(grown.id, "approve", "alice", "fine"))
    store.review(
        ReviewRequest(
            grown.id,
            "edit",
            "bob",
            "multi-line now",
            text=Text(grown.trigger, "Explain the 31-60 day rule.\nThen offer store credit.", "Short."),
            approve=True,
        )
    )
    other = add(store)
    store.review(ReviewRequest(other.id, "reject", "alice", "too vague"))
    store.set_policy_check(
        other.id,
        {
            "conflict": True,
            "clause": "7. Final sale",
            "explanation": "x",
            "model": "m",
            "version": 1,
            "checked_at": "2025-01-02T03:04:05Z",
        },
    )
    return store


@pytest.fixture
def fresh(tmp_path, northwind):
    s = Store.open(tmp_path / "fresh.db")
    s.upsert_domain(northwind)
    yield s
    s.close()


def snapshot(store: Store) -> tuple:
    rows = store.list_strategies()
    return (
        [(r.id, r.status, r.version, r.trigger, r.guidance, r.example) for r in rows],
        [(r.id, len(store.strategy_versions(r.id)), len(store.reviews(r.id))) for r in rows],
    )


# -- export ------------------------------------------------------------------------------------
def test_export_is_deterministic_and_readable(reviewed):
    text = export(reviewed)
    assert export(reviewed) == text
    assert text.startswith("# A strategist strategy library")
    lib, _ = parse_library(text)
    assert [e.id for e in lib.strategies] == [1, 2] and [e.status for e in lib.strategies] == [
        "approved",
        "rejected",
    ]
    grown = lib.strategies[0]
    assert grown.version == 2 and [v.author for v in grown.versions] == ["gate", "bob"]
    assert len(grown.evidence.pairs) == 3 and grown.evidence.samples == 3 and len(grown.evidence.deltas) == 3
    assert grown.provenance["teacher_model"] == "scripted/teacher"
    assert list(grown.provenance) == sorted(grown.provenance)
    # Long and multi-line text as block scalars; the deltas on one line; no usage counters.
    assert "    guidance: |-\n      Explain the 31-60 day rule.\n      Then offer store credit.\n" in text
    assert "deltas: [" in text
    assert "times_retrieved" not in text and "updated_at" not in text
    assert lib.strategies[1].policy_check is not None and lib.strategies[1].policy_check.conflict


def test_export_filters_by_status(reviewed):
    lib, _ = parse_library(export(reviewed, ["rejected"]))
    assert [e.id for e in lib.strategies] == [2]


def test_exported_evidence_is_idempotent_and_keeps_every_pair(reviewed):
    row = reviewed.get_strategy(1)
    once = export_evidence(row.evidence)
    assert export_evidence(once) == once
    # The same typed record as the database's: the pairs themselves, not a count of them.
    assert [p["with_dialogue_id"] for p in once["pairs"]] == [
        p["with_dialogue_id"] for p in row.evidence["pairs"]
    ]


# -- round trips ---------------------------------------------------------------------------------
def test_export_import_export_is_byte_identical(reviewed, fresh):
    first = export(reviewed)
    plan = do_import(fresh, first)
    assert len(plan.creates) == 2 and not plan.reviews
    assert export(fresh) == first
    # The new database records who imported each strategy; the file does not carry that trail.
    assert [r.action for r in fresh.reviews(1)] == ["imported"]
    assert fresh.reviews(1)[0].reviewer == "importer"
    # Importing the same file again changes nothing.
    again = do_import(fresh, first)
    assert again.empty and again.unchanged == 2
    assert export(fresh) == first


def test_the_shipped_example_library_imports_cleanly_and_round_trips(fresh):
    text = EXAMPLE.read_text(encoding="utf-8")
    plan = do_import(fresh, text, source=EXAMPLE.name)
    assert len(plan.creates) >= 3
    statuses = {r.status for r in fresh.list_strategies()}
    assert {"approved", "pending", "rejected"} <= statuses
    assert any(r.policy_check and r.policy_check["conflict"] for r in fresh.list_strategies())
    assert export(fresh) == text


def test_new_entries_without_ids_get_new_ids(reviewed):
    text = (
        "format: strategist-library/1\nstrategies:\n"
        "  - domain: northwind\n    status: approved\n"
        "    trigger: When a customer asks for a discount code\n"
        "    guidance: Only SORRY10 for late shipments, once per order.\n"
    )
    plan = do_import(reviewed, text)
    assert len(plan.creates) == 1
    row = reviewed.list_strategies()[-1]
    assert (row.id, row.status, row.version) == (3, "approved", 1)
    assert reviewed.strategy_versions(3)[0].author == "importer"


# -- changes applied as reviewed actions --------------------------------------------------------------
def test_edits_and_status_changes_become_review_records(reviewed):
    text = export(reviewed)
    changed = text.replace("Short.", "Shorter.", 1)  # strategy 1 stays approved: edit and approve
    plan = do_import(reviewed, changed, source="pr-12.yaml", reviewer="carol")
    assert plan.changes == ["~ strategy 1: edited example (v2 -> v3)"]
    row = reviewed.get_strategy(1)
    assert (row.status, row.version, row.example) == ("approved", 3, "Shorter.")
    last = reviewed.reviews(1)[-1]
    assert (last.action, last.reviewer, last.note) == ("edited", "carol", "imported from pr-12.yaml")
    assert (last.before["example"], last.after["example"], last.after["status"]) == (
        "Short.",
        "Shorter.",
        "approved",
    )
    # Retiring it afterwards is a status change alone.
    plan = do_import(reviewed, export(reviewed).replace("status: approved", "status: retired", 1))
    assert plan.changes == ["~ strategy 1: approved -> retired"]
    assert reviewed.get_strategy(1).status == "retired"


def test_edit_then_reject_in_one_import(store, domain):
    sid = add(store).id
    text = (
        export(store)
        .replace("Did it arrive damaged?", "Was it damaged?", 1)
        .replace("status: pending", "status: rejected")
    )
    plan = do_import(store, text)
    assert plan.changes == ["~ strategy 1: edited example (v1 -> v2), pending -> rejected"]
    assert [r.action for r in store.reviews(sid)] == ["created", "edited", "rejected"]
    assert store.get_strategy(sid).status == "rejected"


def test_edit_and_retire_in_one_import_is_refused(reviewed):
    text = export(reviewed).replace("Short.", "Shorter.", 1).replace("status: approved", "status: retired", 1)
    before = snapshot(reviewed)
    with pytest.raises(InputError, match=r"strategies\[0\].status: an edited strategy is pending"):
        do_import(reviewed, text)
    assert snapshot(reviewed) == before


def test_status_change_alone(store, domain):
    sid = add(store).id
    text = export(store).replace("status: pending", "status: approved")
    plan = do_import(store, text)
    assert plan.changes == ["~ strategy 1: pending -> approved"]
    assert store.get_strategy(sid).status == "approved"
    assert store.reviews(sid)[-1].action == "approved"


def test_a_stale_file_is_a_conflict_and_changes_nothing(reviewed):
    old = export(reviewed)
    reviewed.review(ReviewRequest(1, "edit", "dave", "", text=Text("When x", "Do y.", "")))
    before = snapshot(reviewed)
    with pytest.raises(
        ConflictError, match=r"lib.yaml: line \d+: strategies\[0\]: strategy 1 is at version 3"
    ):
        do_import(reviewed, old.replace("Short.", "Mine."))
    assert snapshot(reviewed) == before


# -- malformed files: one line naming line and field, nothing written ---------------------------------
def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


@pytest.mark.parametrize(
    ("mutate", "needle", "field", "problem"),
    [
        (
            lambda t: t.replace("status: rejected", "status: aproved"),
            "status: aproved",
            "strategies[1].status",
            "Input should be",
        ),
        (
            lambda t: t.replace("    example: Short.", "    exampel: Short.", 1),
            "exampel:",
            "strategies[0].exampel",
            "Extra inputs",
        ),
        (
            lambda t: t.replace("version: 2\n", "version: two\n", 1),
            "version: two",
            "strategies[0].version",
            "valid integer",
        ),
        (
            lambda t: t.replace("  - id: 2\n", "  - id: 1\n"),
            "  - id: 1\n    domain: northwind\n    status: rejected",
            "strategies[1].id",
            "also used",
        ),
        (
            lambda t: t.replace("domain: northwind", "domain: nowhere", 1),
            "domain: nowhere",
            "strategies[0].domain",
            "unknown domain",
        ),
        (
            lambda t: t.replace("status: rejected", "status: approved"),
            "status: approved\n    version: 1",
            "strategies[1].status",
            "rejected -> approved is not a review action",
        ),
    ],
)
def test_malformed_import_names_line_and_field_and_changes_nothing(reviewed, mutate, needle, field, problem):
    good = export(reviewed)
    bad = mutate(good)
    assert bad != good
    before = snapshot(reviewed)
    with pytest.raises(InputError) as info:
        do_import(reviewed, bad)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"lib.yaml: line {_line_of(bad, needle)}: {field}: "), msg
    assert problem in msg
    assert snapshot(reviewed) == before


def test_yaml_syntax_error_has_a_line(reviewed):
    with pytest.raises(InputError, match=r"lib.yaml: line 4: invalid YAML: expected <block end>"):
        do_import(reviewed, "format: strategist-library/1\nstrategies:\n  - id: 1\n   domain: x\n")


def test_missing_required_field_points_at_the_entry(reviewed):
    text = "format: strategist-library/1\nstrategies:\n  - domain: northwind\n    trigger: When x\n"
    with pytest.raises(InputError, match=r"lib.yaml: line 3: strategies\[0\].guidance: Field required"):
        do_import(reviewed, text)


def test_wrong_format_marker(reviewed):
    with pytest.raises(InputError, match=r"line 1: format: Input should be 'strategist-library/1'"):
        do_import(reviewed, "format: 2\nstrategies: []\n")


def test_a_different_strategy_under_an_existing_id_is_refused(reviewed, tmp_path, northwind):
    other = Store.open(tmp_path / "other.db")
    other.upsert_domain(northwind)
    add(other, text={**SECOND, "trigger": "When something unrelated happens"})
    text = export(other)
    other.close()
    with pytest.raises(
        InputError, match=r"strategies\[0\].id: strategy 1 in the database is a different strategy"
    ):
        do_import(reviewed, text)
