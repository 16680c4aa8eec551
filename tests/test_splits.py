"""Splits: the assignment (deterministic, stratified by intent), Store.set_splits, the
``scenarios split`` command, and grow never touching test scenarios after a split."""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter

import pytest
from typer.testing import CliRunner
from world import ROLES

from strategist.cli import app
from strategist.core.domain import Scenario
from strategist.core.splits import assign_splits, split_counts
from strategist.errors import NotFoundError

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _items(sizes: dict[str, int]) -> list[tuple[int, str]]:
    out, sid = [], 1
    for intent, n in sizes.items():
        for _ in range(n):
            out.append((sid, intent))
            sid += 1
    return out


# -- the assignment --------------------------------------------------------------------------------
def test_same_seed_same_assignment_in_any_order():
    items = _items({"a": 7, "b": 5, "c": 3})
    first = assign_splits(items, test=0.3, dev=0.2, seed=11)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    assert assign_splits(shuffled, test=0.3, dev=0.2, seed=11) == first
    others = [assign_splits(items, test=0.3, dev=0.2, seed=s) for s in range(12, 17)]
    assert any(o != first for o in others)  # the seed matters


def test_counts_are_rounded_shares_of_the_whole():
    split = assign_splits(_items({"a": 10, "b": 10}), test=0.3, dev=0.1, seed=0)
    assert Counter(split.values()) == {"train": 12, "test": 6, "dev": 2}
    assert Counter(assign_splits(_items({"a": 7}), test=0.5, seed=0).values()) == {"test": 4, "train": 3}
    assert set(assign_splits(_items({"a": 5}), test=0.0, seed=3).values()) == {"train"}
    assert set(assign_splits(_items({"a": 5}), test=1.0, seed=3).values()) == {"test"}
    assert assign_splits([], test=0.3, seed=1) == {}


def test_stratified_by_intent():
    items = _items({"a": 10, "b": 20, "c": 30})
    intents = dict(items)
    by_intent = split_counts(assign_splits(items, test=0.3, dev=0.1, seed=5), intents)
    assert by_intent == {
        "a": {"train": 6, "dev": 1, "test": 3},
        "b": {"train": 12, "dev": 2, "test": 6},
        "c": {"train": 18, "dev": 3, "test": 9},
    }


def test_rounding_is_settled_across_small_intents():
    # Sizes 4, 2, 1 at 0.5: 3.5 rounds up to 4 test scenarios. Quotas 2, 1 and 0.5: the whole parts
    # give 2 + 1, and the one left goes to c, the only intent with a remainder.
    items = _items({"a": 4, "b": 2, "c": 1})
    counts = split_counts(assign_splits(items, test=0.5, seed=9), dict(items))
    assert {k: v["test"] for k, v in counts.items()} == {"a": 2, "b": 1, "c": 1}
    # Ten intents of one scenario each at 0.3: three of them go to test, which three depends on the seed.
    singles = _items({f"i{k}": 1 for k in range(10)})
    picks = {
        frozenset(s for s, sp in assign_splits(singles, test=0.3, seed=seed).items() if sp == "test")
        for seed in range(8)
    }
    assert all(len(p) == 3 for p in picks) and len(picks) > 1


@pytest.mark.parametrize(("test", "dev"), [(-0.1, 0.0), (1.2, 0.0), (0.7, 0.5)])
def test_impossible_fractions_are_refused(test, dev):
    with pytest.raises(ValueError):
        assign_splits(_items({"a": 3}), test=test, dev=dev, seed=0)


# -- the store -------------------------------------------------------------------------------------
def _scenario(domain_id: str, title: str) -> Scenario:
    return Scenario(
        domain=domain_id, title=title, intent="refund_late_return", goal="g", opening="o", split="train"
    )


def test_set_splits_updates_the_column_in_one_go(store, northwind):
    store.upsert_domain(northwind)
    a, b, c = (store.add_scenario(_scenario(northwind.id, t)) for t in "abc")
    assert a.id and b.id and c.id
    store.set_splits({a.id: "test", b.id: "dev"})
    assert [s.split for s in store.list_scenarios(northwind.id)] == ["test", "dev", "train"]
    assert [s.id for s in store.list_scenarios(northwind.id, "test")] == [a.id]
    # An unknown id or split changes nothing at all.
    with pytest.raises(NotFoundError):
        store.set_splits({a.id: "train", 999: "test"})
    with pytest.raises(ValueError):
        store.set_splits({a.id: "train", b.id: "holdout"})
    assert [s.split for s in store.list_scenarios(northwind.id)] == ["test", "dev", "train"]


# -- the command -----------------------------------------------------------------------------------
@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("STRATEGIST_DB", "STRATEGIST_CONFIG", *(f"STRATEGIST_{r.upper()}_MODEL" for r in ROLES)):
        monkeypatch.delenv(var, raising=False)
    assert run("init", "--db", "lib.db").exit_code == 0  # northwind: 14 scenarios
    return tmp_path


def _splits(db: str = "lib.db") -> dict[int, str]:
    return {s["id"]: s["split"] for s in json.loads(run("scenarios", "list", "--db", db, "--json").stdout)}


def test_split_command_assigns_and_reports(cwd):
    result = run(
        "scenarios", "split", "--test", "0.3", "--dev", "0.1", "--seed", "7", "--db", "lib.db", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["domain"] == "northwind" and report["seed"] == 7
    assert report["counts"] == {"train": 9, "dev": 1, "test": 4}  # 14 x 0.3 = 4.2, 14 x 0.1 = 1.4
    after = _splits()
    assert Counter(after.values()) == report["counts"]
    for intent, row in report["by_intent"].items():
        assert sum(row.values()) == sum(
            1
            for s in json.loads(run("scenarios", "list", "--db", "lib.db", "--json").stdout)
            if s["intent"] == intent
        )
    # Same seed, same assignment, even after the splits were changed in between.
    run("scenarios", "split", "--test", "0.5", "--seed", "1", "--db", "lib.db")
    assert _splits() != after
    run("scenarios", "split", "--test", "0.3", "--dev", "0.1", "--seed", "7", "--db", "lib.db")
    assert _splits() == after


def test_split_command_table(cwd):
    result = run("scenarios", "split", "--seed", "3", "--domain", "northwind", "--db", "lib.db")
    assert result.exit_code == 0, result.output
    for word in ("intent", "train", "dev", "test", "total", "refund_late_return"):
        assert word in result.stdout


def test_split_command_bad_input_is_one_line(cwd):
    result = run("scenarios", "split", "--test", "0.8", "--dev", "0.4", "--seed", "1", "--db", "lib.db")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "more than 1" in result.stderr
    result = run("scenarios", "split", "--seed", "1", "--domain", "nope", "--db", "lib.db")
    assert result.exit_code == 1 and "unknown domain 'nope'" in result.stderr


# -- grow after a split ----------------------------------------------------------------------------
def test_grow_never_touches_test_scenarios_after_a_split(cwd, scripted):
    result = run("scenarios", "split", "--test", "0.5", "--seed", "2", "--db", "lib.db", "--json")
    assert json.loads(result.stdout)["counts"]["test"] == 7
    test_ids = {sid for sid, sp in _splits().items() if sp == "test"}
    grown = run(
        "grow", "--db", "lib.db", "--scenarios", "6", "--generate", "0", "--samples", "3",
        "--variants", "3", "--regression", "3", "--max-turns", "2", "--max-strategies", "2", "--json",
        *scripted,
    )  # fmt: skip
    assert grown.exit_code == 0, grown.output
    assert json.loads(grown.stdout)["status"] == "completed"
    con = sqlite3.connect(cwd / "lib.db")
    used = {r[0] for r in con.execute("select distinct scenario_id from dialogues")}
    con.close()
    assert used and not used & test_ids  # selection, gate variants and regression: train only
    assert len(used) > 6  # the gate's variants and regression sets ran on other train scenarios
