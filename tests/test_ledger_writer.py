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
