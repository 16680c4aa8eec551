"""Response cache, cost budget and per-model concurrency, on scripted models."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3

import pytest
import world
from typer.testing import CliRunner

from strategist.cli import app
from strategist.core.gate import GateConfig
from strategist.engine.cache import ResponseCache
from strategist.engine.grow import GrowConfig, Grower
from strategist.engine.ledger import Budget, Ledger
from strategist.models import Completion, FunctionModel, Sampling

GROW = [
    "grow",
    "--scenarios",
    "1",
    "--generate",
    "1",
    "--samples",
    "3",
    "--variants",
    "0",
    "--regression",
    "0",
    "--max-turns",
    "2",
    "--json",
]


def test_identical_rerun_replays_from_the_cache_with_zero_calls(tmp_path, monkeypatch, scripted):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--db", "start.db"]).exit_code == 0
    shutil.copy(tmp_path / "start.db", tmp_path / "a.db")
    shutil.copy(tmp_path / "start.db", tmp_path / "b.db")

    first = json.loads(
        runner.invoke(app, [*GROW, "--db", "a.db", "--cache-db", "cache.db", *scripted]).stdout
    )
    second = json.loads(
        runner.invoke(app, [*GROW, "--db", "b.db", "--cache-db", "cache.db", *scripted]).stdout
    )
    assert first["llm_calls"] > 20 and first["cache_hits"] == 0
    assert second["llm_calls"] == 0 and second["cache_hits"] == first["llm_calls"]
    for key in ("dialogues", "candidates", "accepted", "scenarios_generated"):
        assert second[key] == first[key]

    def rows(db):
        con = sqlite3.connect(tmp_path / db)
        return (
            con.execute("select turns from dialogues order by id").fetchall(),
            con.execute("select trigger, status from strategies order by id").fetchall(),
        )

    assert rows("a.db") == rows("b.db")  # the replay is the same run, row for row
    hits = (
        sqlite3.connect(tmp_path / "b.db")
        .execute("select count(*), sum(cache_hit) from llm_calls")
        .fetchone()
    )
    assert hits[0] == hits[1] == first["llm_calls"]  # the ledger marks every replayed call


def test_no_cache_calls_the_models_every_time(tmp_path, monkeypatch, scripted):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    runner.invoke(app, ["init", "--db", "start.db"])
    shutil.copy(tmp_path / "start.db", tmp_path / "b.db")
    runner.invoke(app, [*GROW, "--db", "start.db", "--cache-db", "cache.db", *scripted])
    second = json.loads(
        runner.invoke(app, [*GROW, "--db", "b.db", "--cache-db", "cache.db", "--no-cache", *scripted]).stdout
    )
    assert second["cache_hits"] == 0 and second["llm_calls"] > 20


async def test_repeated_samples_of_the_same_prompt_stay_distinct(store):
    counter = {"n": 0}

    def fn(messages, sampling):
        counter["n"] += 1
        return f"reply {counter['n']}"

    msgs = [{"role": "user", "content": "same prompt"}]
    s = Sampling(temperature=0.9)  # no seed: only the occurrence tells samples apart

    async def run_twice():
        ledger = Ledger(store, None, cache=ResponseCache(store))
        m = ledger.wrap(FunctionModel(fn, name="f"), "student")
        return [(await m.complete(msgs, s)).text for _ in range(2)], ledger

    first, _ = await run_twice()
    assert first == ["reply 1", "reply 2"]  # two samples, two answers
    again, ledger = await run_twice()
    assert again == first and counter["n"] == 2  # replayed in order, no new call
    assert ledger.cache_hits == 2 and ledger.calls == 0


async def test_a_run_ledger_writes_its_rows_in_batches_and_flush_writes_the_rest(store):
    from strategist.store.tables import LlmCallRow, ResponseCacheRow

    ledger = Ledger(store, None, cache=ResponseCache(store), write_batch=3, write_interval=3600)
    m = ledger.wrap(FunctionModel(lambda msgs, s: "ok " + msgs[-1]["content"], name="f"), "student")

    async def ask(text):
        return (await m.complete([{"role": "user", "content": text}])).text

    def stored():
        return store.count(LlmCallRow), store.count(ResponseCacheRow)

    assert [await ask("a"), await ask("b")] == ["ok a", "ok b"]
    assert stored() == (0, 0)  # held in memory
    await ask("c")
    assert stored() == (3, 3)  # the third row fills the batch: one write
    await ask("d")
    assert stored() == (3, 3)
    ledger.flush()
    assert stored() == (4, 4)
    assert ledger.calls == 4


async def test_a_ledger_writes_each_call_at_once_by_default(store):
    from strategist.store.tables import LlmCallRow

    ledger = Ledger(store, None, cache=ResponseCache(store))
    m = ledger.wrap(FunctionModel(lambda msgs, s: "ok", name="f"), "student")
    await m.complete([{"role": "user", "content": "x"}])
    assert store.count(LlmCallRow) == 1


async def test_cost_budget_stops_the_run(store, northwind):
    from test_grow import _scenario

    d = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(d)
    store.add_scenario(_scenario(d))
    priced = FunctionModel(
        lambda m, s: Completion(text=world.student_fn(m, s), model="paid", cost_usd=0.01), name="paid/student"
    )
    models = world.models(world.HELPFUL)
    models.student = priced
    config = GrowConfig(
        scenarios=1,
        generate=0,
        gate=GateConfig(samples=3, variants=0, regression=0),
        budget=Budget(max_cost_usd=0.025),
    )
    summary = await Grower(store, d, models, config).run()
    assert summary.status == "stopped" and "cost (USD)" in (summary.stop_reason or "")
    assert summary.cost_usd == pytest.approx(0.03)  # stops at the first check past the limit
    assert summary.unpriced_calls > 0  # the scripted roles have no price: counted apart


async def test_per_model_concurrency_limit(store, northwind):
    from test_grow import _scenario

    d = northwind.model_copy(update={"max_turns": 1})
    store.upsert_domain(d)
    for i in range(3):
        store.add_scenario(_scenario(d, title=f"s{i}"))
    state = {"now": 0, "peak": 0}

    async def slow_student(messages, sampling):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.01)
        state["now"] -= 1
        return world.student_fn(messages, sampling)

    models = world.models(world.HELPFUL)
    models.student = FunctionModel(slow_student, name="shared/model")
    gate = GateConfig(samples=3, variants=0, regression=0)
    await Grower(
        store,
        d,
        models,
        GrowConfig(
            scenarios=3, generate=0, concurrency=6, gate=gate, weak_threshold=0.0, per_model_concurrency=1
        ),
    ).run()
    assert state["peak"] == 1
    state["peak"] = 0
    await Grower(
        store,
        d,
        models,
        GrowConfig(scenarios=3, generate=0, concurrency=6, gate=gate, weak_threshold=0.0, cache=False),
    ).run()
    assert state["peak"] > 1  # without the limit the same run overlaps its calls
