"""serve --capture and strategist traffic: conversations stored redacted in batches off the
request path, judged offline into per-strategy good/poor counts, and harvested (scripted models)."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
import world
from conftest import NORTHWIND
from fastapi.testclient import TestClient
from runtime_library import add_strategies
from typer.testing import CliRunner

from strategist.cli import app as cli
from strategist.models import FunctionModel, register_model, unregister_model
from strategist.runtime import StrategyLibrary
from strategist.runtime.capture import CONVERSATION_HEADER, TrafficRecorder
from strategist.server import create_app

runner = CliRunner()
EMAIL = "lena.fischer@example.com"


def upstream_fn(messages, sampling):
    last = messages[-1]["content"]
    if "NW-" in last:
        return "Thanks, I found your order. I'm sorry, I cannot refund it to your card."
    return "Could you give me the order number and the email on the order?"


@pytest.fixture
def lib(tmp_path, northwind):
    from strategist.store import Store

    path = tmp_path / "lib.db"
    store = Store.open(path)
    ids = add_strategies(store, northwind)
    store.close()
    return path, ids


def _app(path, recorder_options=None, **kw):
    library = StrategyLibrary.open(path, domain="northwind")
    recorder = TrafficRecorder(library.store, "northwind", **(recorder_options or {}))
    upstream = FunctionModel(upstream_fn, name="scripted/upstream")
    return create_app(library, upstream, "northwind", capture=recorder, **kw), library, recorder


def _turn(client, history, text, **headers):
    history.append({"role": "user", "content": text})
    r = client.post("/v1/chat/completions", json={"model": "m", "messages": history}, headers=headers)
    assert r.status_code == 200, r.text
    history.append(r.json()["choices"][0]["message"])
    return r


def test_a_conversation_is_captured_once_redacted_with_the_strategies_per_turn(lib):
    path, ids = lib
    app, _library, recorder = _app(path)
    with TestClient(app) as client:
        history = [{"role": "system", "content": "You are the Northwind bot."}]
        first = _turn(client, history, f"My boots came 40 days ago, I want a refund to my card. I'm {EMAIL}")
        _turn(client, history, "It is NW-48213, refund to my card please")
        other = []
        _turn(client, other, "The stove arrived broken, the box was damaged too.")
    # Closing the app wrote everything queued.
    db = sqlite3.connect(path)
    rows = db.execute("select messages, strategies, redactions from conversations order by id").fetchall()
    assert len(rows) == 2  # two conversations, however many requests each took
    messages, strategies, redactions = (json.loads(x) for x in rows[0])
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert EMAIL not in json.dumps(messages) and "[EMAIL]" in messages[0]["content"]
    assert redactions == {"EMAIL": 1}
    used = first.headers["x-strategist-strategies"].split(",")
    assert strategies[1] == used and f"strategy:{ids['late_refund']}@v1" in used
    assert strategies[0] == [] and strategies[2] == []
    assert recorder.recorded == 3 and recorder.written == 3 and not recorder.errors
    raw = b"".join(p.read_bytes() for p in path.parent.glob("lib.db*"))
    assert EMAIL.encode() not in raw


def test_a_client_conversation_header_groups_requests_and_tool_results_are_redacted(lib):
    path, _ = lib
    app, _, _ = _app(path)
    with TestClient(app) as client:
        for text in ("Where is my order?", "Still there?"):
            msgs = [
                {"role": "user", "content": text},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "find", "arguments": f'{{"email": "{EMAIL}"}}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": f"order of {EMAIL}, 4111 1111 1111 1111"},
            ]
            r = client.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": msgs},
                headers={CONVERSATION_HEADER: "chat-7"},
            )
            assert r.status_code == 200
    rows = sqlite3.connect(path).execute("select external_id, messages from conversations").fetchall()
    assert [r[0] for r in rows] == ["chat-7"]
    stored = rows[0][1]
    assert EMAIL not in stored and "4111" not in stored and "[CARD]" in stored


def test_a_streamed_answer_is_captured_too(lib):
    path, _ = lib
    app, _, _ = _app(path)
    with TestClient(app) as client:
        body = {
            "model": "m",
            "stream": True,
            "messages": [{"role": "user", "content": "My order NW-1 please"}],
        }
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            "".join(r.iter_text())
    (messages,) = sqlite3.connect(path).execute("select messages from conversations").fetchone()
    assert json.loads(messages)[-1] == {
        "role": "assistant",
        "content": upstream_fn([{"content": "NW-"}], None),
    }


def test_responses_never_wait_for_the_database(lib):
    """The writer is held on a lock while requests are answered: every response still comes back
    (the request path only queues), and every conversation is written once the writer goes on."""
    path, _ = lib
    app, library, recorder = _app(path, {"flush_every": 1, "flush_seconds": 0.01})
    gate = threading.Event()
    real = library.store.capture

    def held(batch):
        gate.wait(30)
        return real(batch)

    library.store.capture = held  # type: ignore[method-assign]
    with TestClient(app) as client:
        for i in range(20):
            r = client.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]},
            )
            assert r.status_code == 200
        assert recorder.written == 0  # nothing could be written yet, and nobody waited for it
        gate.set()
    assert recorder.written == 20
    assert sqlite3.connect(path).execute("select count(*) from conversations").fetchone()[0] == 20


def test_a_failed_batch_is_kept_and_written_later(lib):
    path, _ = lib
    library = StrategyLibrary.open(path, domain="northwind")
    recorder = TrafficRecorder(library.store, "northwind")
    real = library.store.capture
    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database is locked")
        return real(batch)

    library.store.capture = flaky  # type: ignore[method-assign]
    recorder.record([{"role": "user", "content": "hi"}], {"role": "assistant", "content": "hello"}, [])
    with pytest.raises(RuntimeError):
        recorder.flush()
    assert recorder.flush() == 1
    library.close()


# -- traffic judge / harvest ------------------------------------------------------------------
def judge_by_refund(messages, sampling):
    """A judge that finds conversations where the agent refused a refund poor."""
    convo = messages[0]["content"]
    bad = "cannot refund" in convo
    if sampling.json_schema:
        n = json.loads(sampling.json_schema)["properties"]["passed"].get("minItems", 0)
        return json.dumps(
            {
                "passed": [not bad] * n,
                "weakest_turn": 2 if bad else 1,
                "critique": "Refused without offering store credit." if bad else "Fine.",
            }
        )
    return "1" if bad else "5"


@pytest.fixture
def roles():
    register_model("scripted/tjudge", lambda: FunctionModel(judge_by_refund, name="scripted/tjudge"))
    register_model(
        "scripted/teacher", lambda: FunctionModel(world.Teacher(world.HELPFUL), name="scripted/teacher")
    )
    yield
    unregister_model("scripted/tjudge")
    unregister_model("scripted/teacher")


def _capture_some(path):
    app, _, _ = _app(path)
    with TestClient(app) as client:
        poor = [{"role": "system", "content": "bot"}]
        _turn(client, poor, "My boots came 40 days ago, I want a refund to my card.")
        _turn(client, poor, "It is NW-48213.")
        good = []
        _turn(client, good, "The stove arrived broken, the box was damaged too.")


def test_traffic_judge_counts_good_and_poor_per_strategy_and_harvest_makes_scenarios(
    lib, roles, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    path, ids = lib
    _capture_some(path)
    db = ["--db", str(path)]
    listed = runner.invoke(cli, ["traffic", "list", *db, "--json"])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 2

    judged = runner.invoke(cli, ["traffic", "judge", *db, "--judge", "scripted/tjudge"])
    assert judged.exit_code == 0, judged.output
    assert "judged 2 captured conversations: 1 good, 1 poor" in judged.stdout
    again = runner.invoke(cli, ["traffic", "judge", *db, "--judge", "scripted/tjudge"])
    assert "judged 0 captured conversations" in again.stdout  # each conversation counts once

    late = ids["late_refund"]
    show = json.loads(runner.invoke(cli, ["strategies", "show", str(late), *db, "--json"]).stdout)
    assert show["traffic"] == {"good": 0, "poor": 1, "by_version": {"v1": {"good": 0, "poor": 1}}}
    # Every strategy counts each judged conversation it was in once: good at 0.6 or more, else poor.
    expected: dict[int, list[int]] = {}
    for refs, score in sqlite3.connect(path).execute("select strategies, score from conversations"):
        for sid in {int(r.split(":")[1].split("@")[0]) for turn in json.loads(refs) for r in turn}:
            expected.setdefault(sid, [0, 0])[score < 0.6] += 1
    assert len(expected) > 1
    for sid, (good, poor) in expected.items():
        got = json.loads(runner.invoke(cli, ["strategies", "show", str(sid), *db, "--json"]).stdout)[
            "traffic"
        ]
        assert (got["good"], got["poor"]) == (good, poor), sid
    text = runner.invoke(cli, ["strategies", "show", str(late), *db]).stdout
    assert "production: in 1 judged captured conversations: 0 good, 1 poor" in text
    table = runner.invoke(cli, ["strategies", "list", *db]).stdout
    assert "0+ 1-" in table

    harvested = runner.invoke(cli, ["traffic", "harvest", *db, "--teacher", "scripted/teacher"])
    assert harvested.exit_code == 0, harvested.output
    rows = (
        sqlite3.connect(path)
        .execute("select c.id, c.score, s.spec from conversations c join scenarios s on s.id = c.scenario_id")
        .fetchall()
    )
    assert len(rows) == 1 and rows[0][1] < 0.6
    spec = json.loads(rows[0][2])
    assert spec["origin"] == "harvested" and spec["source"] == {
        "kind": "traffic",
        "id": rows[0][0],
        "score": rows[0][1],
        "weakest_turn": 2,
    }
    assert [t["role"] for t in spec["prefix"]] == ["customer", "student", "customer"]  # up to the weak turn
    assert spec["intent"] in {
        i.id
        for i in __import__("strategist.packs", fromlist=["x"]).load_domain(NORTHWIND / "domain.yaml").intents
    }
    shown = runner.invoke(cli, ["traffic", "show", str(rows[0][0]), *db]).stdout
    assert "judged 0." in shown and "harvested into scenario" in shown
    nothing = runner.invoke(cli, ["traffic", "harvest", *db, "--teacher", "scripted/teacher"])
    assert "left to harvest" in nothing.stdout


async def test_two_hundred_requests_at_once_lose_no_conversation(lib):
    import asyncio

    import httpx

    path, _ = lib
    app, _, recorder = _app(path)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def one(i: int) -> int:
                body = {
                    "model": "m",
                    "messages": [{"role": "user", "content": f"customer {i}: where is it?"}],
                }
                r = await client.post("/v1/chat/completions", json=body)
                return r.status_code

            codes = await asyncio.gather(*(one(i) for i in range(200)))
    assert codes == [200] * 200
    assert recorder.written == 200 and not recorder.errors
    rows = sqlite3.connect(path).execute("select messages from conversations").fetchall()
    firsts = sorted(json.loads(m)[0]["content"] for (m,) in rows)
    assert firsts == sorted(f"customer {i}: where is it?" for i in range(200))


def test_capture_and_counts_on_both_backends(any_store, northwind):
    from strategist.store.conversations import CapturedExchange

    ids = add_strategies(any_store, northwind)
    ref = f"strategy:{ids['late_refund']}@v1"
    first = CapturedExchange(
        "northwind",
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        [[], [ref]],
        "h1",
        None,
    )
    second = CapturedExchange(
        "northwind",
        [*first.messages, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}],
        [[], [], [], []],
        "h2",
        "h1",
    )
    other = CapturedExchange("northwind", first.messages, [[], []], "h3", None)
    assert any_store.capture([first, second]) == [1, 1]
    assert any_store.capture([other]) == [2]
    row = any_store.get_conversation(1)
    assert len(row.messages) == 4 and row.strategies == [[], [ref], [], []]
    assert any_store.judge_conversation(1, 0.2, {"critique": "x"}, poor_below=0.6)
    assert not any_store.judge_conversation(1, 0.9, {"critique": "again"}, poor_below=0.6)
    assert any_store.judge_conversation(2, 0.9, {}, poor_below=0.6)
    assert any_store.strategy_outcomes() == {ids["late_refund"]: {1: (0, 1)}}
    assert [r.id for r in any_store.list_conversations("northwind", "traffic", judged=True, below=0.6)] == [1]
    harvested = any_store.list_conversations("northwind", "traffic", harvested=False)
    assert [r.id for r in harvested] == [1, 2]
