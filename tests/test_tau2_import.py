"""strategist scenarios import-tau2: the importer on hand-written fixtures in two shapes of domain,
the command end to end, malformed folders (one line, nothing stored), and the real retail data."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strategist.cli import app
from strategist.core.domain import Check, Scenario
from strategist.errors import InputError
from strategist.importers.tau2 import first_person, load_tau2, opening_line

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MINI = FIXTURES / "tau2-mini"
AIRLINE = FIXTURES / "tau2-airline-mini"
RETAIL = (ROOT / ".." / "shared" / "data" / "tau2-retail").resolve()

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("STRATEGIST_DB", "STRATEGIST_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _by_title(scenarios: list[Scenario]) -> dict[str, Scenario]:
    return {s.title.split(":")[0].removeprefix("tau2 task "): s for s in scenarios}


# -- the importer on the fixtures ----------------------------------------------------------------
def test_domain_comes_from_name_policy_and_tasks():
    result = load_tau2(MINI, "Mini Shop")
    d = result.domain
    assert (d.id, d.name, d.company) == ("mini-shop", "Mini Shop", "Mini Shop")
    assert d.policy == (MINI / "policy.md").read_text().strip()
    assert "Mini Shop support policy" in d.agent_role  # the policy's first heading
    assert [i.id for i in d.intents] == [
        "exchange_delivered_order_items",
        "cancel_pending_order",
        "inquiry",
        "general",
    ]
    assert d.persona_dimensions == {"style": ["default", "You are a patient retiree who likes to chat."]}
    assert all(s.problems_with(d) == [] for s in result.scenarios)
    assert all(s.domain == "mini-shop" and s.origin == "imported" for s in result.scenarios)


def test_task_fields_are_mapped():
    t = _by_title(load_tau2(MINI, "Mini Shop").scenarios)
    t1 = t["t1"]
    assert t1.intent == "exchange_delivered_order_items"  # the first action that changes something
    assert t1.goal.startswith("You received your order #O1 and want to exchange the blue mug")
    assert "You are brief and a little impatient." in t1.goal  # task_instructions: how to behave
    assert t1.known_facts[0] == "You are Ana Lima in zip code 22222."
    assert t1.hidden_facts == ["You do not remember your email address."]
    assert t1.success.must_say == [Check(text="14.50")]
    assert t1.success.rubric == ["Agent should tell the user that the price difference is $14.50."]
    assert t1.opening == "Hi, I received my order #O1 and want to exchange the blue mug for the red one."
    assert t1.persona == {"style": "default"}
    # Without communicate_info or nl_assertions: no checks; 'None' and '.' are not facts or behaviour.
    t2 = t["t2"]
    assert t2.success.must_say == [] and t2.success.rubric == [] and t2.hidden_facts == []
    assert t2.goal == "You want to cancel your pending order because you no longer need the lamp."
    assert t2.title == "tau2 task t2: Cancel a pending order after authenticating by email."
    assert t["t3"].intent == "inquiry" and t["t3"].success.must_say == [Check(text="3"), Check(text="white")]
    t4 = t["t4"]
    assert t4.intent == "general" and t4.persona == {"style": "You are a patient retiree who likes to chat."}
    assert t4.known_facts == [] and t4.opening == "Hi, I want the agent to tell me a joke."  # no aside


def test_splits_come_from_split_tasks_and_the_rest_is_dev():
    t = _by_title(load_tau2(MINI, "Mini Shop").scenarios)
    assert {k: s.split for k, s in t.items()} == {"t1": "train", "t2": "test", "t3": "train", "t4": "dev"}


def test_db_records_of_the_customer_become_known_facts():
    result = load_tau2(MINI, "Mini Shop")
    assert result.used_db and result.customers_found == ["t1", "t2"]
    t = _by_title(result.scenarios)
    # Two customers are called Ana Lima: the zip code in the task picks ana_lima_2.
    facts = " | ".join(t["t1"].known_facts)
    assert "Your record in users (ana_lima_2)" in facts and "2 Second Avenue" in facts
    assert "ana_lima_1" not in facts and "#O2" not in facts.replace("[#O1; #O4]", "")
    # Her orders: #O1 points at her, #O4 is only listed in her profile.
    assert any(f.startswith("Your record in orders (#O1)") for f in t["t1"].known_facts)
    assert any(f.startswith("Your record in orders (#O4)") and "Tea Towel" in f for f in t["t1"].known_facts)
    # She does not remember her email (unknown_info), so it is not a fact she knows; her address is.
    assert "ana.lima2@example.com" not in facts
    # Found by email; the product named in the order is not a customer.
    facts2 = " | ".join(t["t2"].known_facts)
    assert "Your record in users (bo_chen_7)" in facts2 and "Your record in orders (#O3)" in facts2
    assert "bo.chen@example.com" in facts2 and "products" not in facts2
    assert t["t3"].known_facts == ["You are Zed Quill from zip code 99999."]  # not in db.json


def test_without_db_json_there_are_no_record_facts(tmp_path):
    folder = tmp_path / "mini"
    shutil.copytree(MINI, folder)
    (folder / "db.json").unlink()
    result = load_tau2(folder, "Mini Shop")
    assert not result.used_db and result.customers_found == []
    assert _by_title(result.scenarios)["t1"].known_facts == ["You are Ana Lima in zip code 22222."]


def test_a_differently_shaped_domain_imports_too():
    """People in an array with other field names, bookings linked by a 'holder' field, integer ids,
    persona strings, plain-text instructions, a user-side action and no evaluation criteria."""
    result = load_tau2(AIRLINE, "Skylark Air")
    d = result.domain
    assert d.id == "skylark-air" and d.agent_role.startswith(
        "You are the customer-support agent of Skylark Air."
    )
    assert [i.id for i in d.intents] == ["rebook_flight", "refund_booking", "general"]
    assert d.persona_dimensions["style"] == [
        "You are a frequent flyer who is calm and precise.",
        "You are nervous about flying and talk a lot.",
        "default",
    ]
    t = _by_title(result.scenarios)
    assert {k: s.split for k, s in t.items()} == {"0": "train", "1": "test", "2": "train"}
    # Found by the member id in an expected action's arguments; the booking via its holder.
    assert t["0"].known_facts[1].startswith("Your record in members (M-1002): ")
    assert "Lea Stone" in t["0"].known_facts[1]
    assert t["0"].known_facts[2] == "Your record in bookings (QX7): code: QX7; flight: SK22; seat: 14A"
    assert t["0"].success.must_say == [Check(text="free of charge")]
    # Found by full name; she does not know her member id, so neither the field nor the key is shown.
    assert t["1"].known_facts[1] == (
        "Your record in members: full_name: Rosa Diaz; contact_email: rosa.d@example.org; tier: basic"
    )
    assert "ZZ9" in t["1"].known_facts[2] and "M-1003" not in " ".join(t["1"].known_facts)
    assert t["2"].goal.startswith("You want to know whether pets may travel") and t["2"].intent == "general"
    assert t["2"].opening == "Hi, I want to know whether pets may travel in the cabin."
    assert result.customers_found == ["0", "1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("You want to return your lamp.", "I want to return my lamp."),
        ("If the agent asks you to confirm, you say yes.", "If the agent asks me to confirm, I say yes."),
        ("You're sure the box is yours.", "I'm sure the box is mine."),
        ("As you are moving, you need it.", "As I am moving, I need it."),
    ],
)
def test_first_person(text, expected):
    assert first_person(text) == expected


def test_opening_is_short_first_person_and_never_empty():
    long = "You want " + "a very long list of things " * 20 + "today."
    assert opening_line(long).startswith("Hi, I want a very long") and len(opening_line(long)) <= 170
    assert opening_line("Due to a move, you need a new address. Later more.") == (
        "Hi, due to a move, I need a new address."
    )
    assert opening_line(" . ") == "Hi, I need some help, please."


# -- the command ---------------------------------------------------------------------------------
def test_import_command_end_to_end(cwd):
    result = run("scenarios", "import-tau2", str(MINI), "--name", "Mini Shop", "--db", "lib.db")
    assert result.exit_code == 0, result.output
    assert "imported 4 scenarios into domain 'mini-shop'" in result.stdout
    assert "train 2, dev 1, test 1" in result.stdout and "found for 2 of 4 tasks" in result.stdout
    items = json.loads(run("scenarios", "list", "--db", "lib.db", "--json").stdout)
    assert sorted(s["split"] for s in items) == ["dev", "test", "train", "train"]
    assert {s["domain"] for s in items} == {"mini-shop"}
    doms = json.loads(run("domains", "list", "--db", "lib.db", "--json").stdout)
    assert doms == [{"id": "mini-shop", "name": "Mini Shop", "scenarios": 4}]
    # A second import under the same name is refused and adds nothing.
    again = run("scenarios", "import-tau2", str(MINI), "--name", "Mini Shop", "--db", "lib.db")
    assert again.exit_code == 1 and "already has 4 scenarios" in again.stderr
    assert len(json.loads(run("scenarios", "list", "--db", "lib.db", "--json").stdout)) == 4
    # Both fixtures side by side in one database.
    assert run("scenarios", "import-tau2", str(AIRLINE), "--name", "skylark", "--db", "lib.db").exit_code == 0
    assert len(json.loads(run("scenarios", "list", "--db", "lib.db", "--json").stdout)) == 7


def _rows(db: Path) -> tuple[list, list]:
    con = sqlite3.connect(db)
    try:
        return (
            con.execute("select id, spec from domains order by id").fetchall(),
            con.execute("select id, domain_id, split from scenarios order by id").fetchall(),
        )
    finally:
        con.close()


def _edit_json(name: str, change):
    def edit(folder: Path) -> None:
        path = folder / name
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data, indent=2))

    return edit


def _drop(key: str, *path):
    def change(data):
        for p in path:
            data = data[p]
        del data[key]

    return change


def _set(value, key: str, *path):
    def change(data):
        for p in path:
            data = data[p]
        data[key] = value

    return change


def _break_line_3(folder: Path) -> None:
    lines = (folder / "tasks.json").read_text().splitlines()
    lines[2] = lines[2] + " ,,"
    (folder / "tasks.json").write_text("\n".join(lines))


BAD_FOLDERS = {
    "missing tasks.json": (lambda f: (f / "tasks.json").unlink(), "tasks.json", "file not found"),
    "missing policy.md": (lambda f: (f / "policy.md").unlink(), "policy.md", "file not found"),
    "invalid JSON": (_break_line_3, "tasks.json: line 3: invalid JSON", ""),
    "task without user_scenario": (
        _edit_json("tasks.json", _drop("user_scenario", 2)),
        "tasks.json: [2].user_scenario: missing",
        "",
    ),
    "reason_for_call missing": (
        _edit_json("tasks.json", _drop("reason_for_call", 0, "user_scenario", "instructions")),
        "tasks.json: [0].user_scenario.instructions.reason_for_call: missing",
        "",
    ),
    "communicate_info not a list": (
        _edit_json("tasks.json", _set("14.50", "communicate_info", 0, "evaluation_criteria")),
        "tasks.json: [0].evaluation_criteria.communicate_info",
        "expected an array of strings, got a string",
    ),
    "an nl_assertion that is a number": (
        _edit_json("tasks.json", _set(["ok", 3], "nl_assertions", 0, "evaluation_criteria")),
        "tasks.json: [0].evaluation_criteria.nl_assertions[1]",
        "expected a string, got a number",
    ),
    "persona not a string": (
        _edit_json("tasks.json", _set(["calm"], "persona", 1, "user_scenario")),
        "tasks.json: [1].user_scenario.persona",
        "expected a string, got an array",
    ),
    "duplicate task id": (_edit_json("tasks.json", _set("t1", "id", 3)), "tasks.json: [3].id", "duplicate"),
    "split list not a list": (
        _edit_json("split_tasks.json", _set("t1", "train")),
        "split_tasks.json: train",
        "expected an array",
    ),
    "task in train and test": (
        _edit_json("split_tasks.json", _set(["t2", "t1"], "test")),
        "split_tasks.json: test[1]",
        "also in 'train'",
    ),
    "db.json not an object": (
        lambda f: (f / "db.json").write_text("[1, 2]"),
        "db.json: (top level)",
        "expected an object",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_malformed_folders_get_one_line_and_store_nothing(cwd, case):
    breaker, where, problem = BAD_FOLDERS[case]
    folder = cwd / "bad"
    shutil.copytree(MINI, folder)
    breaker(folder)
    assert run("init", "--db", "lib.db").exit_code == 0  # a database with northwind in it
    before = _rows(cwd / "lib.db")
    result = run("scenarios", "import-tau2", str(folder), "--name", "Mini Shop", "--db", "lib.db")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert where in result.stderr and problem in result.stderr
    assert _rows(cwd / "lib.db") == before


def test_a_name_without_letters_is_refused(cwd):
    result = run("scenarios", "import-tau2", str(MINI), "--name", "!!!", "--db", "lib.db")
    assert result.exit_code == 1 and "--name" in result.stderr


def test_add_scenarios_is_all_or_nothing(store):
    result = load_tau2(MINI, "Mini Shop")
    orphan = result.scenarios[0].model_copy(update={"domain": "no-such-domain"})
    with pytest.raises(Exception):  # noqa: B017 - the foreign key fails the whole transaction
        store.add_scenarios([*result.scenarios, orphan], domain=result.domain)
    assert store.list_domains() == [] and store.list_scenarios() == []
    stored = store.add_scenarios(result.scenarios, domain=result.domain)
    assert [s.id for s in stored] == [s.id for s in store.list_scenarios("mini-shop")]
    assert store.get_domain("mini-shop") == result.domain


# -- the real tau2-bench retail domain -------------------------------------------------------------
@pytest.mark.skipif(not RETAIL.exists(), reason=f"{RETAIL} is not here")
def test_real_tau2_retail_imports(store):
    result = load_tau2(RETAIL, "tau2-retail")
    assert len(result.scenarios) == 114
    assert result.split_counts() == {"train": 74, "dev": 0, "test": 40}
    assert len(result.customers_found) == 114
    assert all(
        s.opening.startswith("Hi, ") and s.problems_with(result.domain) == [] for s in result.scenarios
    )
    assert sum(len(s.success.must_say) for s in result.scenarios) > 0
    store.add_scenarios(result.scenarios, domain=result.domain)
    assert len(store.list_scenarios("tau2-retail", "train")) == 74
    assert len(store.list_scenarios("tau2-retail", "test")) == 40


def test_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        load_tau2(tmp_path / "nope", "x")
