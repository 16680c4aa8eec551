"""A run's ledger writes off the event loop: batches and stored results go to one writer thread,
in the order they were made, and flush() waits for it. The guarantees stay those of writes on the
loop: a stored result has its calls' rows written before it, and no row is lost."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from strategist.engine.cache import ResponseCache
from strategist.engine.ledger import Ledger, can_write_from_a_thread
from strategist.models import FunctionModel, Sampling
from strategist.store import Store


@pytest.fixture
def lib(tmp_path, northwind):
    """A library file with the Northwind domain, and a run on it."""
    store = Store.open(tmp_path / "lib.db")
    store.upsert_domain(northwind)
    yield store, store.start_run(northwind.id, "grow", {})
    store.close()


def _recording(store: Store, log: list[tuple[str, int]]) -> None:
    """Log (what, thread id) of every write the ledger and the cache make."""
    record_calls, cache_put_many = store.record_calls, store.cache_put_many

    def calls(rows):
        log.append(("calls", threading.get_ident()))
        record_calls(rows)

    def cached(items):
        log.append(("cache", threading.get_ident()))
        cache_put_many(items)

    store.record_calls = calls  # type: ignore[method-assign]
    store.cache_put_many = cached  # type: ignore[method-assign]


async def test_batches_and_results_are_written_off_the_loop_in_order(tmp_path, lib):
    store, run_id = lib
    log: list[tuple[str, int]] = []
    _recording(store, log)
    ledger = Ledger(store, run_id, cache=ResponseCache(store), write_batch=4, background=True)
    model = ledger.wrap(FunctionModel(lambda m, s: f"reply {s.seed}", name="scripted/x"), "student")
    loop_thread = threading.get_ident()

    for seed in range(10):  # two full batches of 4 go to the writer while calls go on
        await model.complete([{"role": "user", "content": "hi"}], Sampling(seed=seed))

    def result() -> str:
        log.append(("result", threading.get_ident()))
        return "stored"

    assert await ledger.store_result(result) == "stored"
    ledger.flush()
    assert all(thread != loop_thread for _, thread in log)
    assert [what for what, _ in log] == ["calls", "cache"] * 3 + ["result"]  # rows before the result
    con = sqlite3.connect(tmp_path / "lib.db")
    assert con.execute("select count(*) from llm_calls").fetchone() == (10,)
    assert con.execute("select count(*) from response_cache").fetchone() == (10,)


async def test_a_failed_background_write_is_raised_by_the_next_flush(lib):
    store, run_id = lib

    def broken(rows):
        raise RuntimeError("disk full")

    store.record_calls = broken  # type: ignore[method-assign]
    ledger = Ledger(store, run_id, write_batch=2, background=True)
    model = ledger.wrap(FunctionModel(lambda m, s: "x", name="scripted/x"), "student")
    for seed in range(2):
        await model.complete([{"role": "user", "content": "hi"}], Sampling(seed=seed))
    with pytest.raises(RuntimeError, match="disk full"):
        ledger.flush()


def test_one_connection_databases_are_written_on_the_loop(tmp_path):
    assert can_write_from_a_thread(Store.open(tmp_path / "a.db"), None)
    assert not can_write_from_a_thread(Store.open("sqlite://"))


async def test_without_background_results_are_stored_right_away(lib):
    store, run_id = lib
    ledger = Ledger(store, run_id)
    here = threading.get_ident()
    assert await ledger.store_result(lambda: threading.get_ident()) == here
    await asyncio.sleep(0)


def _commits(store: Store) -> list[int]:
    """Counts the commits of this store's engine (one per transaction)."""
    import sqlalchemy as sa

    seen: list[int] = []
    sa.event.listen(store.engine, "commit", lambda conn: seen.append(1))
    return seen


async def test_a_result_and_its_calls_rows_are_one_commit(tmp_path, lib):
    store, run_id = lib
    ledger = Ledger(store, run_id, cache=ResponseCache(store), write_batch=64, background=True)
    model = ledger.wrap(FunctionModel(lambda m, s: f"reply {s.seed}", name="scripted/x"), "student")
    for seed in range(3):
        await model.complete([{"role": "user", "content": "hi"}], Sampling(seed=seed))
    dialogue = _dialogue(store)
    commits = _commits(store)
    d = await ledger.store_result(lambda: store.add_dialogue(dialogue, run_id=run_id, round=1))
    ledger.flush()
    assert len(commits) == 1  # the 3 ledger rows, 3 cached responses and the dialogue together
    con = sqlite3.connect(tmp_path / "lib.db")
    assert con.execute("select count(*) from llm_calls").fetchone() == (3,)
    assert con.execute("select count(*) from response_cache").fetchone() == (3,)
    assert store.get_dialogue(d.id).seed == 7


async def test_a_failing_write_in_a_group_fails_alone(lib):
    """Writes waiting together share one transaction; when one fails, the others are still
    stored (each again on its own) and only the failing one reports its error."""
    from strategist.engine.ledger import GroupWriter

    store, run_id = lib
    dialogue = _dialogue(store)
    writer = GroupWriter([store])
    gate = threading.Event()
    # Hold the writer so that the three writes below are waiting together when it wakes.
    (held,) = writer.submit(gate.wait)

    def bad() -> None:
        store.add_dialogue(dialogue, run_id=run_id, round=2)
        raise RuntimeError("broken write")

    def good():
        return store.add_dialogue(dialogue, run_id=run_id, round=1)

    good1, broken, good2 = writer.submit(good, bad, good)
    gate.set()
    held.result(timeout=10)
    assert good1.result(timeout=10).id and good2.result(timeout=10).id
    with pytest.raises(RuntimeError, match="broken write"):
        broken.result(timeout=10)
    assert isinstance(writer.failure, RuntimeError)
    stored = store.dialogues_for_scenario(dialogue.scenario_id)
    # Both good writes once (the group's rolled-back attempt left nothing behind); the failing
    # write, retried alone, committed its own insert before it raised.
    assert sorted(r.round for r in stored) == [1, 1, 2]
    assert {r.id for r in stored if r.round == 1} == {good1.result().id, good2.result().id}


def test_the_writer_thread_ends_when_idle_and_comes_back(lib):
    from strategist.engine.ledger import GroupWriter

    store, _ = lib
    writer = GroupWriter([store], idle=0.05)
    (f,) = writer.submit(lambda: threading.current_thread())
    thread = f.result(timeout=10)
    assert not thread.daemon  # a process that exits waits for the writes it was given
    thread.join(timeout=10)
    assert not thread.is_alive()
    (again,) = writer.submit(lambda: 42)
    assert again.result(timeout=10) == 42


def _dialogue(store: Store):
    """A dialogue of the library's first Northwind scenario (added on first use)."""
    from conftest import NORTHWIND

    from strategist.core.dialogue import Dialogue
    from strategist.packs import load_scenario_set

    scenarios = store.list_scenarios("northwind")
    if not scenarios:
        domain = store.get_domain("northwind")
        _, loaded = load_scenario_set(NORTHWIND / "scenarios.yaml", domain)
        store.add_scenarios(loaded[:1], domain=domain)
        scenarios = store.list_scenarios("northwind")
    return Dialogue(scenario_id=scenarios[0].id, seed=7, sample=0, condition="baseline", turns=[])
