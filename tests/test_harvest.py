"""Harvesting scenarios from the student's own weak dialogues (scripted models, offline)."""

from __future__ import annotations

import json

import pytest
import world

from strategist.core.dialogue import Dialogue, Judgement, ToolCall, ToolFunction, Turn
from strategist.core.domain import Scenario
from strategist.core.gate import GateConfig
from strategist.engine.grow import GrowConfig, Grower, RoleModels
from strategist.engine.harvest import HarvestConfig, Harvester, conversation_turns, weak_dialogues
from strategist.models import FunctionModel
from strategist.roles import Teacher


def _scenario(domain, title="Late refund", split="train", **kw) -> Scenario:
    return Scenario(
        domain=domain.id,
        title=title,
        intent=kw.pop("intent", "refund_late_return"),
        persona={"mood": "angry"},
        goal=kw.pop("goal", "Get a card refund for a jacket delivered 45 days ago."),
        known_facts=["Order NW-48213"],
        opening=kw.pop("opening", "I want my money back for this jacket."),
        split=split,
        **kw,
    )


def judge_second_turn(messages, sampling):
    """world's judge, except that the weakest turn is the agent's second one."""
    out = world.judge_fn(messages, sampling)
    if sampling.json_schema:
        data = json.loads(out)
        data["weakest_turn"] = 2  # clamped to the dialogue's last agent turn when it has one
        return json.dumps(data)
    return out


def _models(teacher: world.Teacher | None = None) -> RoleModels:
    return RoleModels(
        teacher=FunctionModel(teacher or world.Teacher(world.HELPFUL), name="scripted/teacher"),
        student=FunctionModel(world.student_fn, name="scripted/student"),
        customer=FunctionModel(world.Customer(), name="scripted/customer"),
        judge=FunctionModel(judge_second_turn, name="scripted/judge"),
    )


@pytest.fixture
def domain(store, northwind):
    d = northwind.model_copy(update={"max_turns": 3})
    store.upsert_domain(d)
    return d


def _config(**kw) -> GrowConfig:
    base = {
        "rounds": 2,
        "scenarios": 1,
        "generate": 0,
        "max_strategies": 1,
        "harvest": 1,
        "gate": GateConfig(samples=2, variants=0, regression=0),
    }
    base.update(kw)
    return GrowConfig(**base)


async def test_grow_harvests_weak_dialogues_and_the_next_round_works_on_them(store, domain):
    source = store.add_scenario(_scenario(domain))
    teacher = world.Teacher({**world.USELESS})  # a useless strategy: nothing accepted, always weak
    summary = await Grower(store, domain, _models(teacher), _config()).run()

    assert summary.status == "completed" and summary.rounds_completed == 2
    harvested = [s for s in store.list_scenarios(domain.id) if s.origin == "harvested"]
    assert len(harvested) == 2 == summary.scenarios_harvested  # one a round
    first = harvested[0]
    src = first.source
    assert src["kind"] == "dialogue" and src["scenario_id"] == source.id and src["weakest_turn"] == 2
    d = store.get_dialogue(src["id"])
    assert d.scenario_id == source.id and d.condition == "baseline"
    # The prefix is the conversation before the weak (second) agent turn, replayed as it was.
    assert [t.content for t in first.prefix] == [t.content for t in d.prefix_before_student_turn(2)]
    assert first.opening == source.opening and first.prefix[-1].role == "customer"
    assert all(not t.strategies for t in first.prefix)
    assert (first.persona, first.intent, first.split) == (source.persona, source.intent, "train")
    assert "Offers store credit for a return past 30 days" in first.success.rubric
    # Round 2 worked on the harvested scenario: its dialogues open with the replayed prefix.
    round2 = [r for r in store.dialogues_for_scenario(first.id) if r.round == 2]
    assert round2, "the harvested scenario was not used by the next round"
    replay = Dialogue.model_validate({"seed": 0, "turns": round2[0].turns})
    assert [t.content for t in replay.turns[: len(first.prefix)]] == [t.content for t in first.prefix]
    assert harvested[1].source["scenario_id"] == first.id  # round 2's failure, harvested in turn


async def test_grow_without_harvest_harvests_nothing(store, domain):
    store.add_scenario(_scenario(domain))
    summary = await Grower(store, domain, _models(world.Teacher(world.USELESS)), _config(harvest=0)).run()
    assert summary.scenarios_harvested == 0
    assert all(s.origin != "harvested" for s in store.list_scenarios(domain.id))


async def _judged_run(store, domain, scenarios):
    """A grow of one round on ``scenarios`` (no gate work): its dialogues judged, all weak."""
    config = _config(rounds=1, harvest=0, scenarios=len(scenarios), weak_threshold=0.0)
    return await Grower(store, domain, _models(world.Teacher(world.USELESS)), config).run()


async def test_test_scenarios_are_never_harvested_into_train(store, domain):
    train = store.add_scenario(_scenario(domain, title="Train one"))
    test = store.add_scenario(
        _scenario(domain, title="Held out", split="test", goal="Refund of boots, 50 days.")
    )
    # An eval-like run over both splits: dialogues of the test scenario are weak too.
    run = store.start_run(domain.id, "eval", {})
    for sc in (train, test):
        d = store.add_dialogue(
            Dialogue(
                scenario_id=sc.id,
                seed=1,
                turns=[
                    Turn(role="customer", content=sc.opening),
                    Turn(role="student", content="Sorry, I cannot help with that."),
                    Turn(role="customer", content="Seriously? It was 45 days."),
                    Turn(role="student", content="Sorry, I cannot help with that."),
                ],
            ),
            run_id=run,
            round=None,
        )
        store.add_judgement(
            Judgement(dialogue_id=d.id, score=0.2, critique="No store credit.", weakest_turn=2)
        )
    teacher = Teacher(FunctionModel(world.Teacher(world.HELPFUL), name="t"), domain)
    weak = weak_dialogues(store, run, 0.6)
    result = await Harvester(
        store, domain, teacher, HarvestConfig(max=5, duplicate_threshold=0.99)
    ).from_dialogues(weak)
    by_source = {s.source["scenario_id"]: s for s in result.added}
    assert set(by_source) == {train.id, test.id}
    assert by_source[train.id].split == "train"
    assert by_source[test.id].split == "test"  # a test failure stays in test: nothing leaks into train
    assert {s.id for s in store.list_scenarios(domain.id, split="train")} == {
        train.id,
        by_source[train.id].id,
    }
    # Harvesting again finds nothing new: each dialogue is harvested once.
    assert weak_dialogues(store, run, 0.6) == []


async def test_near_duplicates_of_other_scenarios_are_dropped_in_any_split(store, domain):
    a = store.add_scenario(_scenario(domain, title="A"))
    run = store.start_run(domain.id, "grow", {})
    d = store.add_dialogue(
        Dialogue(
            scenario_id=a.id,
            seed=1,
            turns=[Turn(role="customer", content=a.opening), Turn(role="student", content="No.")],
        ),
        run_id=run,
        round=1,
    )
    store.add_judgement(Judgement(dialogue_id=d.id, score=0.1, critique="Refused.", weakest_turn=1))
    teacher = Teacher(FunctionModel(world.Teacher(world.HELPFUL), name="t"), domain)
    harvester = Harvester(store, domain, teacher, HarvestConfig())
    draft = await harvester.draft(
        d.turns, key="k", source={"kind": "dialogue", "id": d.id}, weak_turn=1, of=a
    )
    # A held-out scenario that says the same: the harvest would leak it into train, so it is dropped.
    twin = store.add_scenario(
        draft.model_copy(update={"title": "Twin", "split": "test", "origin": "imported", "key": None})
    )
    result = await harvester.from_dialogues(weak_dialogues(store, run, 0.6))
    assert result.added == []
    [(_, like, sim)] = result.duplicates
    assert like == twin.id and sim >= 0.6
    # Its own source scenario does not count as a duplicate (a harvest is a situation within it).
    store2_like, _ = harvester.duplicate_of(draft, besides=a.id)
    assert store2_like == twin.id


async def test_a_tool_using_prefix_is_replayed_with_its_calls_made_again(store, domain):
    from strategist.engine.simulate import replay_tool_calls
    from strategist.tools.scripted import ScriptedToolset

    spec = {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look an order up.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
    tools = ScriptedToolset(
        [spec], {"get_order": lambda a: f"order {a['order_id']}: delivered 45 days ago (fresh state)"}
    )
    prefix = [
        Turn(role="customer", content="Refund for NW-1?"),
        Turn(
            role="student",
            content="",
            tool_calls=[
                ToolCall(id="c1", function=ToolFunction(name="get_order", arguments='{"order_id": "NW-1"}'))
            ],
        ),
        Turn(role="tool", content="order NW-1: delivered (old state)", tool_call_id="c1", name="get_order"),
        Turn(role="student", content="It was delivered 45 days ago."),
        Turn(role="customer", content="So?"),
    ]
    replayed = await replay_tool_calls(prefix, tools)
    assert [c.arguments for c in tools.calls] == ['{"order_id": "NW-1"}']
    assert replayed[2].content == "order NW-1: delivered 45 days ago (fresh state)"
    assert [t.content for i, t in enumerate(replayed) if i != 2] == [
        t.content for i, t in enumerate(prefix) if i != 2
    ]
    s = _scenario(domain, opening="Refund for NW-1?", prefix=prefix)
    assert s.opening_turns[1].tool_calls[0].name == "get_order"


def test_a_prefix_must_start_with_the_opening_and_end_with_the_customer(domain):
    turns = [Turn(role="customer", content="Hi"), Turn(role="student", content="Hello")]
    with pytest.raises(ValueError, match="prefix"):
        _scenario(domain, opening="Hi", prefix=turns)
    with pytest.raises(ValueError, match="opening"):
        _scenario(domain, opening="Other", prefix=turns[:1])


def test_conversation_turns_keep_tool_calls_and_drop_system_messages():
    turns = conversation_turns(
        [
            {"role": "system", "content": "You are a bot."},
            {"role": "user", "content": "Where is NW-1?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "get_order", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "shipped"},
            {"role": "assistant", "content": [{"type": "text", "text": "It shipped."}]},
        ]
    )
    assert [t.role for t in turns] == ["customer", "student", "tool", "student"]
    assert turns[2].name == "get_order" and turns[3].content == "It shipped."


def test_scenarios_harvest_command_reads_a_run(tmp_path, monkeypatch, scripted):
    from typer.testing import CliRunner

    from strategist.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    db = ["--db", str(tmp_path / "lib.db")]
    assert runner.invoke(app, ["init", *db]).exit_code == 0
    grown = runner.invoke(
        app,
        [
            "grow",
            *db,
            "--scenarios",
            "2",
            "--generate",
            "0",
            "--samples",
            "1",
            "--variants",
            "0",
            "--regression",
            "0",
            "--max-turns",
            "2",
            "--json",
            *scripted,
        ],
    )
    assert grown.exit_code == 0, grown.output
    run_id = json.loads(grown.stdout)["run_id"]
    out = runner.invoke(
        app,
        ["scenarios", "harvest", *db, "--run", str(run_id), "--max", "1", "--teacher", "scripted/teacher"],
    )
    assert out.exit_code == 0, out.output
    assert "harvested 1 scenarios from run" in out.stdout
    listed = json.loads(runner.invoke(app, ["scenarios", "list", *db, "--json"]).stdout)
    [h] = [s for s in listed if s["origin"] == "harvested"]
    assert h["source"]["kind"] == "dialogue" and h["key"] == f"harvest:dialogue:{h['source']['id']}"
    shown = runner.invoke(app, ["scenarios", "show", str(h["id"]), *db]).stdout
    assert f"harvested from dialogue {h['source']['id']}" in shown
    runs = json.loads(runner.invoke(app, ["runs", "list", *db, "--json"]).stdout)
    assert [r["command"] for r in runs] == ["grow", "harvest"]
    assert runner.invoke(app, ["runs", "show", str(runs[-1]["id"]), *db]).exit_code == 0
    again = runner.invoke(
        app,
        ["scenarios", "harvest", *db, "--run", str(run_id), "--max", "5", "--teacher", "scripted/teacher"],
    )
    assert "harvested" in again.stdout  # the other scenario's dialogue, not the one taken already
    bad = runner.invoke(app, ["scenarios", "harvest", *db, "--run", str(runs[-1]["id"])])
    assert bad.exit_code == 1 and "is a harvest run" in bad.stderr


def test_a_weakest_turn_past_the_conversation_is_its_last_turn_not_a_failure():
    from strategist.roles.teacher import harvest_model

    model = harvest_model(None, None, 3)
    assert model.model_json_schema()["properties"]["weakest_turn"]["maximum"] == 3
    draft = {
        "title": "Late refund",
        "goal": "A card refund 45 days after delivery.",
        "known_facts": [],
        "hidden_facts": [],
        "rubric": ["Offers store credit for a return past 30 days"],
        "must_say": [],
        "must_not_say": [],
    }
    fields = set(model.model_fields)
    draft = {k: v for k, v in draft.items() if k in fields}
    assert model.model_validate({**draft, "weakest_turn": 7}).weakest_turn == 3
    assert model.model_validate({**draft, "weakest_turn": 0}).weakest_turn == 1
