"""The storage layer on SQLite and on PostgreSQL: migrations from empty, every Store method, a whole
scripted grow, and two grows plus auditors writing to one database at the same time.

PostgreSQL runs when $STRATEGIST_TEST_POSTGRES_URL is set (.ci/postgres.sh); otherwise those cases
skip. Tests named ``..._agree`` run the same work on both backends and compare the results."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import sys
import threading
import time
import traceback
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
import world
from auditkit import scenario as make_scenario
from pydantic import BaseModel
from sqlmodel import SQLModel

import strategist.store.tables as tables
from strategist.audit.lifecycle import ConflictError, ReviewRequest, Text
from strategist.core.dialogue import CheckResult, Dialogue, Judgement, RubricResult, StrategyText, Turn
from strategist.core.gate import GateConfig
from strategist.engine.grow import GrowConfig, Grower
from strategist.errors import NotFoundError, StrategistError
from strategist.store import Store, make_engine, migrations
from strategist.store.tables import (
    CandidateRow,
    DialogueRow,
    JudgementRow,
    LlmCallRow,
    ResponseCacheRow,
    ReviewRow,
    StrategyVersionRow,
)

ALL_MIGRATIONS = [name for name, _ in migrations.MIGRATIONS]


def model_tables() -> dict[str, sa.Table]:
    return {
        obj.__table__.name: obj.__table__
        for obj in vars(tables).values()
        if isinstance(obj, type)
        and issubclass(obj, SQLModel)
        and obj.__module__ == tables.__name__
        and hasattr(obj, "__table__")
    }


def norm(value: Any) -> Any:
    """Rows and models as plain data that compares across backends: timestamps are only checked to
    be there (SQLite returns them naive, PostgreSQL aware), floats to 9 places."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [norm(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime):
        return "<time>"
    if isinstance(value, float):
        return round(value, 9)
    return value


# -- migrations --------------------------------------------------------------------------------------
def test_migrations_from_empty_build_the_model_schema(any_db):
    engine = make_engine(any_db)
    try:
        assert migrations.applied(engine) == []
        assert migrations.migrate(engine) == ALL_MIGRATIONS
        assert migrations.migrate(engine) == []
        assert migrations.applied(engine) == sorted(ALL_MIGRATIONS)
        insp = sa.inspect(engine)
        assert set(model_tables()) | {"schema_migrations"} <= set(insp.get_table_names())
        for name, table in model_tables().items():
            cols = {c["name"]: c for c in insp.get_columns(name)}
            assert set(cols) == {c.name for c in table.columns}, name
            for c in table.columns:
                if not c.primary_key:
                    assert bool(cols[c.name]["nullable"]) == bool(c.nullable), f"{name}.{c.name}"
            assert insp.get_pk_constraint(name)["constrained_columns"] == [c.name for c in table.primary_key]
            fks = sorted(
                (tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(name)
            )
            assert fks == sorted(((fk.parent.name,), fk.column.table.name) for fk in table.foreign_keys), name
            # PostgreSQL also lists the unique index behind each unique constraint: not an index of ours.
            indexes = sorted(
                tuple(i["column_names"]) for i in insp.get_indexes(name) if not i.get("duplicates_constraint")
            )
            assert indexes == sorted(tuple(c.name for c in i.columns) for i in table.indexes), name
    finally:
        engine.dispose()


def test_a_new_database_opened_by_several_at_once(any_db):
    """Two grows and an auditor started together on a new (or just upgraded) database: each
    migrates, none fails, the migrations are applied once."""
    start = threading.Barrier(4)
    errors: list[str] = []

    def open_it() -> None:
        start.wait()
        try:
            Store.open(any_db).close()
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, "\n".join(errors)
    engine = make_engine(any_db)
    try:
        assert migrations.applied(engine) == sorted(ALL_MIGRATIONS)
    finally:
        engine.dispose()


# -- every Store method --------------------------------------------------------------------------------
def _dialogue(scenario_id: int, sample: int, **kw: Any) -> Dialogue:
    base: dict[str, Any] = {
        "scenario_id": scenario_id,
        "seed": 2**31 - 1 - sample,  # the largest seed derive_seed makes fits a 32-bit column
        "sample": sample,
        "student_model": "scripted/student",
        "customer_model": "scripted/customer",
        "turns": [
            Turn(role="customer", content="Ich möchte mein Geld zurück ☃ «bitte»"),
            Turn(role="student", content="Sorry — I can't. 返品はできません", strategies=["strategy:1@v1"]),
        ],
    }
    base.update(kw)
    return Dialogue(**base)


def exercise(store: Store, domain: Any) -> dict[str, Any]:
    """Every public Store method, with the behaviour each must have; returns what they returned."""
    out: dict[str, Any] = {}
    # domains
    store.upsert_domain(domain)
    store.upsert_domain(domain)
    renamed = domain.model_copy(update={"name": "Northwind Outfitters GmbH"})
    store.upsert_domain(renamed)
    assert store.get_domain(domain.id) == renamed
    out["domains"] = [(d.id, d.name) for d in store.list_domains()]
    with pytest.raises(NotFoundError):
        store.get_domain("nowhere")

    # scenarios
    s1 = store.add_scenario(make_scenario(domain, title="Rückgabe nach 45 Tagen ☃ 返品"))
    s2 = store.add_scenario(make_scenario(domain, title="Held out", split="test"))
    s3 = store.add_scenario(make_scenario(domain, title="Clearance tent", intent="final_sale_return"))
    assert s1.id is not None and s2.id is not None and s3.id is not None
    assert store.get_scenario(s1.id) == s1
    out["scenarios"] = norm(store.list_scenarios(domain.id))
    out["train"] = [s.id for s in store.list_scenarios(domain.id, split="train")]
    assert out["train"] == [s1.id, s3.id]
    with pytest.raises(NotFoundError):
        store.get_scenario(10_000)

    # runs
    config = {"rounds": 2, "gate": {"samples": 3}, "note": "naïve “quotes”", "ratio": 0.1}
    run = store.start_run(domain.id, "grow", config)
    assert store.get_run(run).config == config and store.get_run(run).status == "running"
    generated = store.add_scenario(
        make_scenario(domain, title="Generated one", origin="generated"), run_id=run, round=1
    )
    assert [s.id for s in store.scenarios_of_run(run, 1)] == [generated.id]

    # dialogues and judgements
    d1 = store.add_dialogue(_dialogue(s1.id, 0), run_id=run, round=1)
    d2 = store.add_dialogue(_dialogue(s1.id, 1, ended_by="error", error="model x: boom"), run_id=run, round=1)
    d3 = store.add_dialogue(_dialogue(s3.id, 3, condition="candidate"), run_id=run, round=1, candidate_id=77)
    assert d1.id is not None and d2.id is not None and d3.id is not None
    assert store.get_dialogue(d1.id) == d1
    assert store.get_dialogue(d2.id).error == "model x: boom"
    out["for_scenario"] = [r.id for r in store.dialogues_for_scenario(s1.id)]
    assert out["for_scenario"] == [d1.id, d2.id]
    with pytest.raises(NotFoundError):
        store.get_dialogue(10_000)
    j1 = store.add_judgement(
        Judgement(
            dialogue_id=d1.id,
            judge_model="scripted/judge",
            checks=[CheckResult(kind="must_say", check="store credit", passed=False)],
            rubric=[RubricResult(item="Offers store credit", passed=False, reason="nein")],
            rating=2.25,
            rating_method="logprobs",
            score=1 / 3,
            critique="Did not offer store credit.",
            weakest_turn=1,
        )
    )
    j3 = store.add_judgement(Judgement(dialogue_id=d3.id, judge_model="scripted/judge", score=0.75))
    assert store.judgement_for(d1.id) == j1
    assert store.judgement_for(d3.id) == j3
    assert store.judgement_for(d2.id) is None
    out["scores"] = norm(store.scenario_scores(domain.id))
    assert out["scores"] == {s1.id: [round(1 / 3, 9), 1]}
    assert norm(store.scenario_scores(domain.id, "candidate")) == {s3.id: [0.75, 1]}

    # candidates, the gate's acceptance and strategies
    c1 = store.add_candidate(
        CandidateRow(
            run_id=run,
            round=1,
            domain_id=domain.id,
            scenario_id=s1.id,
            source_dialogue_id=d1.id,
            teacher_model="scripted/teacher",
            evidence={"critique": "x"},
            **world.HELPFUL,
        )
    )
    assert c1.id is not None and c1.outcome == "proposed"
    accepted = store.accept_candidate(
        c1.id,
        StrategyText(**world.HELPFUL),
        provenance={"run_id": run, "candidate_id": c1.id},
        evidence={"deltas": [0.5, 0.25], "ci_low": 0.1},
        reason="helps",
    )
    assert accepted.id is not None and accepted.status == "pending" and accepted.version == 1
    merged, other = store.add_candidates(
        [
            CandidateRow(
                run_id=run,
                round=1,
                domain_id=domain.id,
                scenario_id=s3.id,
                teacher_model="scripted/teacher",
                outcome="merged",
                strategy_id=accepted.id,
                reason="similar",
                **world.HELPFUL,
            ),
            CandidateRow(
                run_id=run,
                round=1,
                domain_id=domain.id,
                scenario_id=s3.id,
                teacher_model="scripted/teacher",
                **world.USELESS,
            ),
        ]
    )
    assert other.id is not None
    store.update_candidate(other.id, outcome="rejected", reason="no clear improvement")
    with pytest.raises(NotFoundError):
        store.update_candidate(10_000, outcome="x")
    assert store.get_strategy(accepted.id).provenance["merged_candidates"] == [merged.id]
    out["candidates"] = norm(store.list_candidates(run))
    assert [c["outcome"] for c in out["candidates"]] == ["accepted", "merged", "rejected"]
    assert [c.id for c in store.candidates_for(run, 1, s3.id)] == [merged.id, other.id]
    assert store.list_candidates(run + 1) == []
    imported = store.add_strategy(
        domain.id,
        StrategyText(**world.USELESS),
        provenance={},
        evidence={},
        author="importer",
        status="approved",
    )
    assert imported.id is not None
    assert [r.id for r in store.list_strategies(domain.id, ["pending"])] == [accepted.id]
    assert [r.id for r in store.list_strategies(statuses=["approved", "pending"])] == [
        accepted.id,
        imported.id,
    ]
    out["versions"] = norm(store.strategy_versions(accepted.id))
    out["reviews"] = norm(store.reviews(imported.id))
    assert [r["action"] for r in out["reviews"]] == ["created"]
    with pytest.raises(NotFoundError):
        store.get_strategy(10_000)

    # the audit trail (optimistic version check) and run-time retrieval counters
    store.review(ReviewRequest(accepted.id, "approve", "ana", seen_version=1, seen_status="pending"))
    with pytest.raises(ConflictError):
        store.review(ReviewRequest(accepted.id, "approve", "bo", seen_version=1, seen_status="pending"))
    edited = store.review(
        ReviewRequest(
            accepted.id,
            "edit",
            "ana",
            seen_version=1,
            seen_status="approved",
            text=Text(world.HELPFUL["trigger"], "Offer STORE-CREDIT-OFFER; mention the 31–60 day rule."),
        )
    )
    assert (edited.version, edited.status) == (2, "pending")
    store.set_policy_check(accepted.id, {"conflict": False, "version": 2, "ratio": float("nan")})
    out["policy_check"] = store.get_strategy(accepted.id).policy_check
    assert out["policy_check"] == {"conflict": False, "version": 2, "ratio": None}  # JSON has no NaN
    store.add_retrieval_counts({accepted.id: 3, imported.id: 0})
    store.add_retrieval_counts({accepted.id: 2})
    assert store.get_strategy(accepted.id).times_retrieved == 5
    out["corpus"] = norm(store.ranking_corpus(domain.id, ["pending", "approved"]))
    assert [d["id"] for d in out["corpus"]] == [accepted.id, imported.id]
    # The last part, max(updated_at), is a string on SQLite and a datetime on PostgreSQL: it is
    # only ever compared with itself on one database.
    *signature, latest = store.ranking_signature(domain.id, ["pending", "approved"])
    assert latest is not None
    out["signature"] = signature
    out["strategies"] = norm(store.list_strategies(domain.id))
    out["history"] = [(r.action, r.version, r.reviewer) for r in store.reviews(accepted.id)]
    assert out["history"] == [("created", 1, "gate"), ("approved", 1, "ana"), ("edited", 2, "ana")]
    assert [v.version for v in store.strategy_versions(accepted.id)] == [1, 2]

    # the ledger and events
    store.record_call(
        LlmCallRow(run_id=run, role="student", model="m", prompt_tokens=10, completion_tokens=5, cost_usd=0.5)
    )
    store.record_call(LlmCallRow(run_id=run, role="judge", model="m", prompt_tokens=7, completion_tokens=1))
    store.record_call(LlmCallRow(run_id=run, role="judge", model="m", prompt_tokens=7, cache_hit=True))
    store.record_call(LlmCallRow(run_id=run, role="judge", model="m", ok=False, error="model m: 500 «boom»"))
    store.record_call(LlmCallRow(run_id=None, role="judge", model="m", prompt_tokens=100, cost_usd=0.25))
    out["totals"] = store.call_totals(run)
    assert out["totals"] == {
        "calls": 3,
        "prompt_tokens": 17,
        "completion_tokens": 6,
        "cache_hits": 1,
        "cost_usd": 0.5,
        "unpriced_calls": 2,
    }
    out["all_totals"] = store.call_totals()
    assert (out["all_totals"]["calls"], out["all_totals"]["cost_usd"]) == (4, 0.75)
    assert store.count(LlmCallRow, run_id=run) == 4 and store.count(LlmCallRow, ok=False) == 1
    store.record_event(
        run, "judge_failure", f"judging dialogue {d2.id}: boom", round=1, detail={"dialogue_id": d2.id}
    )
    store.record_event(run, "info", "nul \x00 and ☃ survive", detail={"x": [1, "\x00"]})
    out["events"] = norm(store.events(run))
    # Text columns cannot hold NUL on PostgreSQL: it becomes U+FFFD on both; JSON keeps it.
    assert out["events"][1]["message"] == "nul \ufffd and ☃ survive"
    assert out["events"][1]["detail"] == {"x": [1, "\x00"]}
    assert store.failed_dialogue_ids(run) == {d2.id}

    # the response cache
    assert store.cache_get("k" * 64) is None
    store.cache_put("k" * 64, "m", {"text": "first ☃", "prompt_tokens": 3})
    store.cache_put("k" * 64, "m", {"text": "second"})  # a key written meanwhile: the first one stays
    assert store.cache_get("k" * 64) == {"text": "first ☃", "prompt_tokens": 3}
    assert store.count(ResponseCacheRow) == 1

    # a run's progress and its end
    out["counts"] = norm(store.run_counts(run))
    assert out["counts"] == {
        "dialogues": 3,
        "judged": 2,
        "scenarios_used": 2,
        "scenarios_generated": 1,
        "scenarios_harvested": 0,
        "mean_baseline_score": round(1 / 3, 9),
    }
    progress = store.run_dialogues(run)
    assert [(c, d.id, j.id if j else None) for c, d, j in progress] == [
        (None, d1.id, j1.id),
        (None, d2.id, None),
        (77, d3.id, j3.id),
    ]
    out["progress"] = norm(progress)
    assert store.run_scenario_ids(run, 1) == {s1.id}
    assert store.run_scenario_ids(run, 5, round_no=1) == {s1.id}
    assert store.run_scenario_ids(run, 5, before_round=1) == set()
    store.finish_run(run, "stopped", {"dialogues": 3}, stop_reason="budget reached")
    store.reopen_run(run)
    assert store.get_run(run).status == "running" and store.get_run(run).finished_at is None
    store.finish_run(run, "completed", {"dialogues": 3, "mean": 1 / 3})
    done = store.get_run(run)
    assert done.status == "completed" and done.finished_at is not None
    out["runs"] = norm(store.list_runs())
    with pytest.raises(NotFoundError):
        store.finish_run(10_000, "completed", {})
    return out


def test_every_store_method(any_store, northwind):
    exercise(any_store, northwind)


def test_every_store_method_agrees_across_backends(tmp_path, postgres_db, northwind):
    results = []
    for target in (tmp_path / "s.db", postgres_db):
        store = Store.open(target)
        try:
            results.append(exercise(store, northwind))
        finally:
            store.close()
    sqlite, postgres = results
    assert sqlite.keys() == postgres.keys()
    for key in sqlite:
        assert sqlite[key] == postgres[key], key


# -- a whole grow ------------------------------------------------------------------------------------
def scripted_grow(store: Store, northwind: Any) -> dict[str, Any]:
    """Two rounds on the scripted world: generated scenarios, an accepted strategy, merges, rejections."""
    domain = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(domain)
    store.add_scenario(make_scenario(domain))
    store.add_scenario(
        make_scenario(domain, title="Late refund, boots", goal="Refund boots from 50 days ago.")
    )
    store.add_scenario(make_scenario(domain, title="Clearance tent", intent="final_sale_return"))
    config = GrowConfig(
        rounds=2,
        scenarios=2,
        generate=1,
        max_strategies=1,
        gate=GateConfig(samples=3, variants=1, regression=1),
    )
    summary = asyncio.run(Grower(store, domain, world.models(world.HELPFUL), config).run()).as_dict()
    summary.pop("seconds")
    return {
        "summary": summary,
        "dialogues": norm(
            [
                (d.candidate_id, d.scenario_id, d.condition, d.sample, d.seed, d.turns)
                for d in _all(store, DialogueRow)
            ]
        ),
        "judgements": norm(
            [(j.dialogue_id, j.score, j.rating, j.critique) for j in _all(store, JudgementRow)]
        ),
        "candidates": norm(
            [(c.scenario_id, c.outcome, c.strategy_id, c.reason) for c in store.list_candidates()]
        ),
        "strategies": norm(
            [(s.trigger, s.status, s.provenance, s.evidence) for s in store.list_strategies()]
        ),
        "calls": store.call_totals(),
    }


def _all(store: Store, table: type[Any]) -> list[Any]:
    with store.session() as s:
        return list(s.exec(sa.select(table).order_by(table.id)).scalars())


def test_a_scripted_grow(any_store, northwind):
    result = scripted_grow(any_store, northwind)
    summary = result["summary"]
    assert summary["status"] == "completed" and summary["rounds_completed"] == 2
    assert summary["accepted"] == 1 and summary["merged"] >= 1 and summary["failures"] == 0
    assert summary["dialogues"] == len(result["dialogues"]) == len(result["judgements"])
    assert summary["llm_calls"] == result["calls"]["calls"]
    [strategy] = result["strategies"]
    assert strategy[0] == world.HELPFUL["trigger"] and strategy[1] == "pending"


def test_a_scripted_grow_agrees_across_backends(tmp_path, postgres_db, northwind):
    results = []
    for target in (tmp_path / "g.db", postgres_db):
        store = Store.open(target)
        try:
            results.append(scripted_grow(store, northwind))
        finally:
            store.close()
    sqlite, postgres = results
    for key in sqlite:
        assert sqlite[key] == postgres[key], key


# -- two grows and two auditors at once ----------------------------------------------------------------
AUDITED = [
    {
        "trigger": "When a customer asks when a back-ordered item will ship",
        "guidance": "Give the back-order date from the order and offer to cancel that line.",
    },
    {
        "trigger": "When a customer gives a discount code that has expired",
        "guidance": "Say it expired on its date; never apply an expired code.",
    },
    world.HELPFUL,  # every HELPFUL proposal of both runs is merged into this one
]
ALTERNATIVE = {
    "trigger": "If the parcel arrived more than a month back and the buyer insists on cash",
    "guidance": "Propose STORE-CREDIT-OFFER, quoting the thirty-one to sixty day clause.",
    "example": "Store credit is possible here.",
}


class TwoProposals(world.Teacher):
    """Proposes HELPFUL (merged into the seeded strategy) and ALTERNATIVE (gated) each time."""

    def __call__(self, messages: list[dict[str, str]], sampling: Any) -> str:
        if sampling.json_schema and "design realistic test conversations" not in messages[0]["content"]:
            return json.dumps({"strategies": [world.HELPFUL, ALTERNATIVE]})
        return super().__call__(messages, sampling)


def _grow_thread(target: str, domain: Any, key: int, out: dict[str, Any], errors: list[str]) -> None:
    """One grow on its own Store (engine) and event loop. Both runs have the same seed, so they make
    the same requests and also race to fill the shared response cache."""
    store = Store.open(target)
    try:
        config = GrowConfig(
            rounds=1,
            scenarios=4,
            generate=0,
            max_strategies=2,
            concurrency=4,
            gate=GateConfig(samples=3, variants=1, regression=1),
        )
        models = world.models(world.HELPFUL, teacher=TwoProposals(world.HELPFUL))
        out[key] = asyncio.run(Grower(store, domain, models, config).run())
    except BaseException:
        errors.append(f"grow {key}:\n{traceback.format_exc()}")
    finally:
        store.close()


def _auditor_thread(
    target: str,
    name: str,
    ids: list[int],
    stop: threading.Event,
    done: list[tuple[int, str, int, str]],
    conflicts: list[int],
    errors: list[str],
) -> None:
    """Approves and edits the seeded strategies as fast as it can, each action against the version
    it just read; records every action the store said it applied."""
    store = Store.open(target, migrate=False)
    rng = random.Random(name)
    try:
        for i in range(300):
            if stop.is_set() and i >= 20:
                break
            sid = rng.choice(ids)
            row = store.get_strategy(sid)
            base = AUDITED[ids.index(sid)]
            if row.status == "pending" and i % 3 == 0:
                req = ReviewRequest(sid, "approve", name, seen_version=row.version, seen_status=row.status)
            else:
                guidance = f"{base['guidance']} ({name} {i})"
                req = ReviewRequest(
                    sid,
                    "edit",
                    name,
                    seen_version=row.version,
                    seen_status=row.status,
                    text=Text(row.trigger, guidance, row.example),
                )
            try:
                store.review(req)
            except ConflictError:
                conflicts.append(sid)
                continue
            # What the compare-and-set wrote (the row returned may already show someone else's edit).
            version = row.version + 1 if req.action == "edit" else row.version
            done.append((sid, req.action, version, req.text.guidance if req.text else ""))
            time.sleep(0.002)
    except BaseException:
        errors.append(f"auditor {name}:\n{traceback.format_exc()}")
    finally:
        store.close()


def test_two_grows_and_two_auditors_at_once(any_db, northwind):
    setup = Store.open(any_db)
    domain = northwind.model_copy(update={"max_turns": 2})
    setup.upsert_domain(domain)
    for i, goal in enumerate(["a jacket, 45 days", "boots, 50 days", "a tent, 40 days", "a stove, 35 days"]):
        setup.add_scenario(
            make_scenario(domain, title=f"Late refund {i}", goal=f"Get a card refund for {goal}.")
        )
    ids = [
        setup.add_strategy(domain.id, StrategyText(**t), provenance={}, evidence={}, author="seed").id or 0
        for t in AUDITED
    ]
    setup.close()

    summaries: dict[int, Any] = {}
    done: list[tuple[int, str, int, str]] = []
    conflicts: list[int] = []
    errors: list[str] = []
    stop = threading.Event()
    grows = [
        threading.Thread(target=_grow_thread, args=(any_db, domain, key, summaries, errors)) for key in (1, 2)
    ]
    auditors = [
        threading.Thread(target=_auditor_thread, args=(any_db, name, ids, stop, done, conflicts, errors))
        for name in ("ana", "bo")
    ]
    for t in [*grows, *auditors]:
        t.start()
    for t in grows:
        t.join(timeout=240)
    stop.set()
    for t in auditors:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in [*grows, *auditors]), "a writer is stuck"
    assert not errors, "\n".join(errors)

    store = Store.open(any_db, migrate=False)
    try:
        # No primary key twice, in any table.
        with store.engine.connect() as conn:
            for name, table in model_tables().items():
                pk = ", ".join(c.name for c in table.primary_key)
                n = conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()
                distinct = conn.exec_driver_sql(
                    f"SELECT count(*) FROM (SELECT DISTINCT {pk} FROM {name}) AS keys"
                ).scalar_one()
                assert n == distinct, name

        # Both runs are complete, and their stored rows match what they reported.
        assert sorted(summaries) == [1, 2]
        runs = {s.run_id for s in summaries.values()}
        assert len(runs) == 2
        gate_made: list[int] = []
        for summary in summaries.values():
            run = store.get_run(summary.run_id)
            assert summary.status == run.status == "completed" and run.finished_at is not None
            assert summary.failures == 0 and summary.candidates >= 2
            counts = store.run_counts(summary.run_id)
            assert counts["dialogues"] == counts["judged"] == summary.dialogues > 0
            assert store.count(DialogueRow, run_id=summary.run_id) == summary.dialogues
            totals = store.call_totals(summary.run_id)
            assert (totals["calls"], totals["cache_hits"]) == (summary.llm_calls, summary.cache_hits)
            assert store.count(LlmCallRow, run_id=summary.run_id) == summary.llm_calls + summary.cache_hits
            cands = store.list_candidates(summary.run_id)
            assert len(cands) == summary.candidates
            assert all(c.outcome in ("accepted", "rejected", "merged") for c in cands)
            for c in cands:
                if c.outcome == "accepted":
                    made = store.get_strategy(c.strategy_id or 0)
                    assert made.provenance["candidate_id"] == c.id
                    assert made.provenance["run_id"] == summary.run_id
                    gate_made.append(made.id or 0)
            assert sorted(summary.accepted_ids) == sorted(
                c.strategy_id for c in cands if c.outcome == "accepted"
            )
        # Every strategy is a seeded one or the gate's; every merge was noted on its target, once.
        assert sorted(s.id for s in store.list_strategies()) == sorted([*ids, *gate_made])
        merged = sorted(c.id or 0 for c in store.list_candidates() if c.outcome == "merged" and c.strategy_id)
        noted = sorted(i for s in store.list_strategies() for i in s.provenance.get("merged_candidates", []))
        assert merged and noted == merged

        # Every action an auditor was told it applied is in the database: nothing was overwritten.
        assert done, "no auditor action went through"
        for sid in ids:
            mine = [d for d in done if d[0] == sid]
            edits = {version: guidance for _, action, version, guidance in mine if action == "edit"}
            assert len(edits) == sum(1 for d in mine if d[1] == "edit"), "two edits made the same version"
            approvals = [d for d in mine if d[1] == "approve"]
            row = store.get_strategy(sid)
            assert row.version == 1 + len(edits), sid
            versions = store.strategy_versions(sid)
            assert [v.version for v in versions] == list(range(1, row.version + 1))
            for v in versions[1:]:
                assert v.guidance == edits[v.version]
            assert row.guidance == versions[-1].guidance
            actions = [r.action for r in store.reviews(sid)]
            assert actions.count("edited") == len(edits) and actions.count("approved") == len(approvals)
        assert store.count(ReviewRow) >= len(done) + len(ids)
        assert store.count(StrategyVersionRow) == len(store.list_strategies()) + sum(
            1 for d in done if d[1] == "edit"
        )
    finally:
        store.close()


def test_new_strategies_after_importing_ones_with_ids(any_store, northwind, request):
    """A library file exported elsewhere brings its ids; the next strategy the gate adds must not
    collide with them."""
    from strategist.audit.exchange import parse_library, plan_import

    any_store.upsert_domain(northwind)
    text = (
        "format: strategist-library/1\nstrategies:\n"
        "- id: 1\n  domain: northwind\n  trigger: When a customer asks X\n  guidance: Do Y\n"
        "- id: 2\n  domain: northwind\n  trigger: When a customer asks Z\n  guidance: Do W\n"
    )
    lib, where = parse_library(text)
    plan = plan_import(
        lib, where, "lib.yaml", any_store.current_states([1, 2]), lambda d: True, reviewer="ana", note=""
    )
    assert any_store.apply_import(plan.creates, plan.reviews, reviewer="ana", note="") == [1, 2]
    made = any_store.add_strategy(
        northwind.id, StrategyText(**world.HELPFUL), provenance={}, evidence={}, author="gate"
    )
    assert made.id == 3


# -- opening a PostgreSQL URL ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/lib", "postgresql+psycopg://u:p@db:5432/lib"),
        ("postgres://u:p@db/lib?sslmode=require", "postgresql+psycopg://u:p@db/lib?sslmode=require"),
        ("postgresql+psycopg2://u:p@db/lib", "postgresql+psycopg2://u:p@db/lib"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_postgresql_urls_get_the_psycopg_driver(given, used):
    from strategist.store import database_url

    assert database_url(given) == used


def test_missing_postgresql_driver_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now fails
    with pytest.raises(StrategistError) as info:
        Store.open("postgresql://ana:s3cret-pw@127.0.0.1:5432/lib")
    msg = str(info.value)
    assert "\n" not in msg and "strategist[postgres]" in msg
    assert "127.0.0.1:5432/lib" in msg and "s3cret-pw" not in msg


def test_unreachable_postgresql_is_one_line_without_the_password():
    pytest.importorskip("psycopg")
    with pytest.raises(StrategistError) as info:
        Store.open("postgresql://ana:s3cret-pw@127.0.0.1:1/lib?connect_timeout=5")
    msg = str(info.value)
    assert "\n" not in msg and "not a usable database" in msg and "127.0.0.1:1/lib" in msg
    assert "s3cret-pw" not in msg
