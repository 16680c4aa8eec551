"""Dialogues whose agent uses tools: the loop of tool steps, what is stored, action checks, the
step bound, failures that never crash a run, isolation through the real MCP fixture, and the
CLI (``tools list|call``, grow and eval with a pack that declares tools)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from strategist.cli import app
from strategist.core.dialogue import Dialogue, ToolCall, ToolFunction, Turn
from strategist.core.domain import Scenario, SuccessCriteria
from strategist.core.scoring import run_checks
from strategist.core.tools import McpServerConfig, ToolsConfig, ToolSpec
from strategist.engine.simulate import simulate
from strategist.models import FunctionModel, ScriptedModel, register_model, tool_call, unregister_model
from strategist.roles import Customer, Student
from strategist.tools import LocalEnvironment, ScriptedToolset, environment_from_config

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "mcp_orders_server.py"
GET_ORDER = ToolSpec(
    name="get_order",
    description="Look an order up by its id.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
)
CANCEL = ToolSpec(
    name="cancel_order",
    description="Cancel a pending order.",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "reason": {"type": "string"}},
        "required": ["order_id", "reason"],
    },
)


def scenario(**success) -> Scenario:
    return Scenario(
        id=1,
        domain="northwind",
        title="Where is my order",
        intent="order_status",
        goal="Learn the status of order A100.",
        opening="Hi, where is my order A100?",
        success=SuccessCriteria.model_validate(success),
        max_turns=2,
    )


def orders_toolset() -> ScriptedToolset:
    book = {"A100": "pending"}

    def get(args):
        return json.dumps({"order_id": args["order_id"], "status": book.get(args["order_id"], "unknown")})

    def cancel(args):
        if book.get(args["order_id"]) != "pending":
            raise ValueError(f"order {args['order_id']} cannot be cancelled")
        book[args["order_id"]] = "cancelled"
        return "cancelled"

    return ScriptedToolset([GET_ORDER, CANCEL], {"get_order": get, "cancel_order": cancel})


def looks_up_then_answers(messages, sampling, tools):
    """A student that looks the order up before it answers, and quotes what the tool said."""
    last = messages[-1]
    if tools is not None and tools.choice != "none" and last["role"] == "user":
        return tool_call("get_order", {"order_id": "A100"})
    if last["role"] == "tool":
        return f"Your order is {json.loads(last['content'])['status']}."
    return "Anything else?"


def roles(northwind, student_fn, customer_reply="Thanks. ###STOP###"):
    student = Student(FunctionModel(student_fn, name="scripted/student"), northwind)
    customer = Customer(ScriptedModel(default=customer_reply, name="scripted/customer"), northwind)
    return student, customer


async def test_a_tool_call_its_result_then_the_answer(northwind):
    student, customer = roles(northwind, looks_up_then_answers)
    tools = orders_toolset()
    d = await simulate(
        scenario(), northwind, student, customer, seed=1, tools=tools, tool_specs=[GET_ORDER, CANCEL]
    )
    assert [t.role for t in d.turns] == ["customer", "student", "tool", "student", "customer"]
    step, result, reply = d.turns[1:4]
    assert step.tool_calls[0].name == "get_order" and json.loads(step.tool_calls[0].function.arguments) == {
        "order_id": "A100"
    }
    assert (
        result.tool_call_id == step.tool_calls[0].id and result.name == "get_order" and result.error is None
    )
    assert json.loads(result.content)["status"] == "pending" and result.latency_ms is not None
    assert reply.content == "Your order is pending." and not reply.tool_limit
    assert [t.content for t in d.student_turns] == ["Your order is pending."]  # the customer's view
    # The model was offered the tools as OpenAI tool dicts, and saw its call and the result.
    model = student.model
    assert model.calls[0].tool_names == ["get_order", "cancel_order"]
    second = model.calls[1].messages
    assert second[-2]["tool_calls"][0]["function"]["name"] == "get_order" and second[-1]["role"] == "tool"
    # The customer never sees tool calls or results.
    customer_sent = customer.model.calls[0].messages
    assert all('A100", "status' not in m["content"] for m in customer_sent)
    assert [m["content"] for m in customer_sent[2:]] == [
        "Hi, where is my order A100?",
        "Your order is pending.",
    ]
    assert "[agent calls get_order" in d.transcript() and "[get_order result:" in d.transcript()
    assert Dialogue.model_validate(d.model_dump()) == d  # what the store keeps reads back the same


def _dialogue_with(calls: list[tuple[str, dict, str | None]]) -> Dialogue:
    turns = [Turn(role="customer", content="hi")]
    for i, (name, args, error) in enumerate(calls):
        turns.append(
            Turn(
                role="student",
                content="",
                tool_calls=[
                    ToolCall(id=f"c{i}", function=ToolFunction(name=name, arguments=json.dumps(args)))
                ],
            )
        )
        turns.append(Turn(role="tool", tool_call_id=f"c{i}", name=name, content="x", error=error))
    turns.append(Turn(role="student", content="done"))
    return Dialogue(seed=0, turns=turns)


def test_action_checks_pass_and_fail_as_they_should():
    crit = SuccessCriteria.model_validate(
        {
            "actions": [{"name": "cancel_order", "arguments": {"order_id": "A100"}}, "get_order"],
            "forbidden_actions": [{"name": "refund_order"}],
        }
    )
    good = _dialogue_with(
        [
            ("get_order", {"order_id": "A100"}, None),
            ("cancel_order", {"order_id": "A100", "reason": "x"}, None),
        ]
    )
    assert [(c.kind, c.passed) for c in run_checks(good, crit)] == [
        ("action", True),
        ("action", True),
        ("forbidden_action", True),
    ]
    # Wrong arguments, a call the tool refused, and an attempted forbidden call all fail.
    wrong = _dialogue_with([("cancel_order", {"order_id": "B200", "reason": "x"}, None)])
    refused = _dialogue_with([("cancel_order", {"order_id": "A100"}, "order cannot be cancelled")])
    forbidden = _dialogue_with([("refund_order", {"order_id": "A100", "amount": 3}, "refused")])
    assert [c.passed for c in run_checks(wrong, crit)] == [False, False, True]
    assert [c.passed for c in run_checks(refused, crit)] == [False, False, True]
    assert [c.passed for c in run_checks(forbidden, crit)] == [False, False, False]
    # Order-insensitive by default; ordered_actions requires the listed order.
    ordered = crit.model_copy(update={"ordered_actions": True})
    assert [c.passed for c in run_checks(good, ordered)][:2] == [True, False]
    # Numbers by value and lists of ids in any order.
    ids = SuccessCriteria.model_validate(
        {"actions": [{"name": "r", "arguments": {"ids": ["b", "a"], "n": 1}}]}
    )
    assert run_checks(_dialogue_with([("r", {"ids": ["a", "b"], "n": 1.0}, None)]), ids)[0].passed
    assert not run_checks(_dialogue_with([("r", {"ids": ["a"], "n": 1}, None)]), ids)[0].passed


async def test_a_tool_error_and_a_malformed_call_are_recorded_and_the_dialogue_goes_on(northwind):
    def clumsy(messages, sampling, tools):
        last = messages[-1]
        if last["role"] == "user":
            return tool_call("get_order", "{not json", id="x")
        if last["role"] == "tool" and "not json" not in str(messages[-2].get("tool_calls")):
            return "Sorry, I could not find it."
        if last["role"] == "tool":
            return tool_call("cancel_order", {"order_id": "ZZZ", "reason": "asked"})
        return "?"

    student, customer = roles(northwind, clumsy)
    d = await simulate(
        scenario(),
        northwind,
        student,
        customer,
        seed=2,
        tools=orders_toolset(),
        tool_specs=[GET_ORDER, CANCEL],
    )
    results = [t for t in d.turns if t.role == "tool"]
    assert len(results) == 2 and all(r.error for r in results)
    assert "arguments" in results[0].error.lower() or "json" in results[0].error.lower()
    assert "cannot be cancelled" in results[1].error and results[1].content.startswith("Error")
    assert d.error is None and d.student_turns[-1].content == "Sorry, I could not find it."


async def test_the_tool_step_bound_is_kept_and_recorded(northwind):
    def loops(messages, sampling, tools):
        if tools is not None and tools.choice == "none":
            return "Let me get back to you."
        return tool_call("get_order", {"order_id": "A100"})

    student, customer = roles(northwind, loops)
    d = await simulate(
        scenario(),
        northwind,
        student,
        customer,
        seed=3,
        tools=orders_toolset(),
        tool_specs=[GET_ORDER],
        max_tool_steps=3,
    )
    first_turn = d.agent_turn(1)
    assert sum(1 for t in first_turn if t.tool_calls) == 3
    assert first_turn[-1].content == "Let me get back to you." and first_turn[-1].tool_limit
    # Past the bound the tools were still described, but the model could not call them.
    last_call = student.model.calls[3]
    assert last_call.tools is not None and last_call.tools.choice == "none"
    # Every call id is unique within the dialogue, so each result pairs with its call.
    ids = [c.id for t in d.turns for c in t.tool_calls]
    assert len(ids) == len(set(ids))


# -- isolation through the real MCP fixture (stdio) ------------------------------------------------
def fixture_config(isolation: str) -> ToolsConfig:
    settings = {
        "process": {},
        "reset": {"reset_tool": "reset_state"},
        "argument": {"state_argument": "session"},
    }[isolation]
    return ToolsConfig(
        mcp=McpServerConfig(
            command=[sys.executable, str(FIXTURE)], isolation=isolation, hidden=["slow_lookup"], **settings
        ),
        call_timeout=20,
    )


@pytest.mark.parametrize("isolation", ["process", "reset", "argument"])
async def test_two_concurrent_dialogues_never_see_each_others_state(northwind, isolation):
    barrier = asyncio.Barrier(2)

    async def cancels(messages, sampling, tools):
        last = messages[-1]
        if last["role"] == "user":
            return tool_call("get_order", {"order_id": "A100"})
        if (
            last["role"] == "tool"
            and "cancelled" not in last["content"]
            and "cancel_order" not in str(messages[-2])
        ):
            await barrier.wait()  # both dialogues have read A100 before either cancels it
            return tool_call("cancel_order", {"order_id": "A100", "reason": "changed my mind"})
        return "Done."

    env = environment_from_config(fixture_config(isolation), source="test pack")
    async with env:
        specs = await env.list_tools()
        assert "session" not in json.dumps([s.parameters for s in specs]) or isolation != "argument"

        async def one(key: str) -> Dialogue:
            student, customer = roles(northwind, cancels)
            async with env.session(key) as toolset:
                return await simulate(
                    scenario(), northwind, student, customer, seed=4, tools=toolset, tool_specs=specs
                )

        a, b = await asyncio.gather(one("dialogue-a"), one("dialogue-b"))
    for d in (a, b):
        results = [t for t in d.turns if t.role == "tool"]
        assert len(results) == 2, d.transcript()
        assert '"pending"' in results[0].content  # each saw A100 untouched ...
        assert results[1].error is None and '"cancelled"' in results[1].content  # ... and could cancel it


async def test_a_tool_that_hangs_mid_dialogue_times_out_and_is_recorded(northwind):
    config = ToolsConfig(
        mcp=McpServerConfig(
            command=[sys.executable, str(FIXTURE)], isolation="argument", state_argument="session"
        ),
        call_timeout=0.5,
    )

    def slow(messages, sampling, tools):
        if messages[-1]["role"] == "user":
            return tool_call("slow_lookup", {"seconds": 5})
        return "It is taking long; I will email you."

    env = environment_from_config(config, source="test pack")
    async with env:
        specs = await env.list_tools()
        student, customer = roles(northwind, slow)
        async with env.session("k") as toolset:
            d = await simulate(
                scenario(), northwind, student, customer, seed=5, tools=toolset, tool_specs=specs
            )
    result = next(t for t in d.turns if t.role == "tool")
    assert result.error and "0.5 s" in result.error
    assert d.error is None and d.student_turns[0].content.startswith("It is taking long")


# -- through the CLI: a pack that declares tools -----------------------------------------------------
@pytest.fixture
def tool_pack(tmp_path, monkeypatch):
    """A copy of the Northwind pack whose agent has the MCP fixture's order tools, an initialised
    database with it, and scripted models for every role."""
    monkeypatch.chdir(tmp_path)
    spec = yaml.safe_load((ROOT / "scenarios" / "northwind" / "domain.yaml").read_text())
    spec["tools"] = {
        "mcp": {
            "command": [sys.executable, str(FIXTURE)],
            "isolation": "argument",
            "state_argument": "session",
            "hidden": ["reset_state", "slow_lookup"],
        },
        "max_steps": 3,
    }
    pack = tmp_path / "pack" / "domain.yaml"
    pack.parent.mkdir()
    pack.write_text(yaml.safe_dump(spec))
    scenarios = yaml.safe_load((ROOT / "scenarios" / "northwind" / "scenarios.yaml").read_text())
    first = scenarios["scenarios"][0]
    first["success"]["actions"] = [{"name": "cancel_order", "arguments": {"order_id": "A100"}}]
    first["success"]["forbidden_actions"] = ["refund_order"]
    first["split"] = "test"
    (pack.parent / "scenarios.yaml").write_text(yaml.safe_dump({"domain": "northwind", "scenarios": [first]}))
    assert CliRunner().invoke(app, ["init", "--db", "t.db", "--domain", str(pack)]).exit_code == 0
    import world

    def student(messages, sampling, tools):
        last = messages[-1]
        if tools is not None and tools.choice != "none" and last["role"] == "user":
            return tool_call("cancel_order", {"order_id": "A100", "reason": "customer asked"})
        return "I have cancelled order A100 for you."

    fns = {
        "teacher": world.Teacher(world.HELPFUL),
        "student": student,
        "customer": world.Customer(stop_after=1),
        "judge": world.judge_fn,
    }
    for role, fn in fns.items():
        register_model(
            f"scripted/{role}", lambda fn=fn, role=role: FunctionModel(fn, name=f"scripted/{role}")
        )
    yield [f"--{r}=scripted/{r}" for r in ("student", "customer", "judge")]
    for role in fns:
        unregister_model(f"scripted/{role}")


def test_tools_list_and_call_through_the_cli(tool_pack):
    runner = CliRunner()
    listed = runner.invoke(app, ["tools", "list", "--db", "t.db", "--json"])
    assert listed.exit_code == 0, listed.output
    names = [t["function"]["name"] for t in json.loads(listed.stdout)]
    assert "cancel_order" in names and "reset_state" not in names and "slow_lookup" not in names
    assert all(
        "session" not in t["function"]["parameters"].get("properties", {}) for t in json.loads(listed.stdout)
    )
    called = runner.invoke(
        app, ["tools", "call", "get_order", "--args", '{"order_id": "A100"}', "--db", "t.db"]
    )
    assert called.exit_code == 0 and "pending" in called.stdout
    missing = runner.invoke(
        app, ["tools", "call", "get_order", "--args", '{"order_id": "NOPE"}', "--db", "t.db"]
    )
    assert missing.exit_code == 1 and "not found" in missing.stderr
    bad = runner.invoke(app, ["tools", "call", "get_order", "--args", "{oops", "--db", "t.db"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: --args: not valid JSON")


def test_eval_with_tools_reports_the_action_pass_rate(tool_pack):
    result = CliRunner().invoke(app, ["eval", "--db", "t.db", "--samples", "1", "--json", *tool_pack])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    rates = {c["condition"]: c["action_pass_rate"] for c in out["conditions"]}
    assert rates == {"none": 1.0, "generic": 1.0, "library": 1.0}
    from strategist.store import Store

    store = Store.open("t.db")
    d = store.get_dialogue(out["scenarios"][0]["dialogues"]["none"][0])
    call, tool_turn = d.tool_calls[0]
    assert call.name == "cancel_order" and tool_turn is not None and '"cancelled"' in tool_turn.content
    j = store.judgement_for(d.id)
    assert [(c.kind, c.passed) for c in j.checks if c.is_action] == [
        ("action", True),
        ("forbidden_action", True),
    ]
    shown = CliRunner().invoke(
        app, ["eval", "--db", "t.db", "--samples", "1", "--report", "r.html", "--no-cache", *tool_pack]
    )
    assert "action pass rate" in shown.stdout
    html = Path("r.html").read_text()
    assert "action pass rate" in html and "Agent calls" in html and "cancel_order result" in html
    # The dialogue as a reviewer reads it, and as JSON.
    text = CliRunner().invoke(app, ["dialogues", "show", str(d.id), "--db", "t.db"]).stdout
    assert "Agent calls: cancel_order(" in text and "cancel_order result:" in text and "action" in text
    as_json = json.loads(
        CliRunner().invoke(app, ["dialogues", "show", str(d.id), "--db", "t.db", "--json"]).stdout
    )
    assert as_json["turns"][1]["tool_calls"][0]["function"]["name"] == "cancel_order"
    assert as_json["turns"][2]["role"] == "tool" and as_json["judgement"]["checks"]


@pytest.mark.parametrize("flag", ["--fail-start", "--no-tools"])
def test_a_pack_whose_tool_server_fails_is_one_line_error(tool_pack, tmp_path, flag):
    from strategist.store import Store

    store = Store.open("t.db")
    domain = store.get_domain("northwind")
    store.upsert_domain(
        domain.model_copy(
            update={"tools": ToolsConfig(mcp=McpServerConfig(command=[sys.executable, str(FIXTURE), flag]))}
        )
    )
    store.close()
    for args in (["tools", "list"], ["eval", "--samples", "1", *tool_pack]):
        result = CliRunner().invoke(app, [*args, "--db", "t.db"])
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "domain 'northwind'" in lines[0] and str(FIXTURE) in lines[0]


def test_local_environment_gives_python_tools_to_a_grow(northwind, store):
    """A grow whose agent has Python tools: the coaching prompt shows the teacher the tool steps."""
    import world

    from strategist.core.gate import GateConfig
    from strategist.engine.grow import GrowConfig, Grower

    teacher = world.Teacher(world.HELPFUL)
    models = world.models(world.HELPFUL, teacher=teacher)
    models.student = FunctionModel(lambda m, s, t: looks_up_then_answers(m, s, t), name="scripted/student")
    store.upsert_domain(northwind)
    store.add_scenario(scenario().model_copy(update={"id": None, "split": "train"}))
    env = LocalEnvironment(factory=orders_toolset, name="orders")
    config = GrowConfig(scenarios=1, generate=0, gate=GateConfig(samples=3, variants=0, regression=0))
    summary = asyncio.run(Grower(store, northwind, models, config, tools=env).run())
    assert summary.dialogues > 0 and summary.candidates >= 1
    cand = store.list_candidates(summary.run_id)[0]
    assert "[agent calls get_order" in cand.evidence["student_reply"]
    coach = next(c for c in models.teacher.calls if "coach the support agent" in c.messages[0]["content"])
    assert "tool calls and their results" in coach.messages[0]["content"]


def test_reviewers_see_the_tool_steps_of_the_gate_dialogues(store, northwind, tmp_path, monkeypatch):
    """strategies show and the audit page show each call and its result beside what was said."""
    from fastapi.testclient import TestClient

    from strategist.audit_ui.app import COOKIE, create_app
    from strategist.core.dialogue import StrategyText
    from strategist.core.evidence import GateEvidence, GatePair

    store.upsert_domain(northwind)
    sc = store.add_scenario(scenario().model_copy(update={"id": None}))
    talk = _dialogue_with([("get_order", {"order_id": "A100"}, None)])
    ids = []
    for condition in ("baseline", "candidate"):
        d = talk.model_copy(update={"scenario_id": sc.id, "condition": condition, "seed": 7})
        ids.append(store.add_dialogue(d, run_id=None, round=None).id)
    evidence = GateEvidence(
        mean_delta=0.2,
        ci_low=0.1,
        ci_high=0.3,
        deltas=[0.2],
        pairs=[
            GatePair(
                scenario_id=sc.id, seed=7, without_dialogue_id=ids[0], with_dialogue_id=ids[1], delta=0.2
            )
        ],
    )
    row = store.add_strategy(
        "northwind",
        StrategyText(trigger="When x", guidance="Look it up first."),
        provenance={},
        evidence=evidence,
        author="t",
    )
    db = str(tmp_path / "test.db")
    shown = CliRunner().invoke(app, ["strategies", "show", str(row.id), "--db", db])
    assert shown.exit_code == 0, shown.output
    assert (
        "Agent calls" in shown.stdout and "get_order" in shown.stdout and "get_order result" in shown.stdout
    )
    client = TestClient(create_app(store, token="t0k", reviewer="r"))
    client.cookies.set(COOKIE, "t0k")
    page = client.get(f"/strategies/{row.id}").text
    assert "Agent calls" in page and "get_order result" in page
