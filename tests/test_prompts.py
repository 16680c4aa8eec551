"""Prompt templates and their loader (strategist/prompting.py, strategist/prompts/)."""

from __future__ import annotations

import pytest

from strategist.core.cells import Cell
from strategist.core.dialogue import Dialogue, StrategyText, Turn
from strategist.core.domain import Scenario
from strategist.errors import ConfigError, StrategistError
from strategist.models import ScriptedModel
from strategist.prompting import PROMPTS_DIR, render, set_prompt_dirs
from strategist.roles import Customer, Student

STRATEGY = StrategyText(
    id=3,
    trigger="When the customer asks for cash after day 30",
    guidance="Offer store credit instead of a card refund.",
    example="I can offer store credit for this return.",
)
STRATEGY_NO_EXAMPLE = StrategyText(id=4, trigger="When a code is requested", guidance="Only SORRY10 exists.")


@pytest.fixture(autouse=True)
def reset_prompt_dirs(monkeypatch):
    monkeypatch.delenv("STRATEGIST_PROMPTS_DIR", raising=False)
    set_prompt_dirs()
    yield
    monkeypatch.delenv("STRATEGIST_PROMPTS_DIR", raising=False)
    set_prompt_dirs()


@pytest.fixture
def scenario() -> Scenario:
    return Scenario.model_validate(
        {
            "domain": "northwind",
            "title": "Late refund",
            "intent": "refund_late_return",
            "persona": {"mood": "angry", "tech_savvy": "low", "loyalty": "long-time"},
            "goal": "Get a card refund for a jacket delivered 45 days ago.",
            "known_facts": ["Order NW-48213, email dana@example.com"],
            "hidden_facts": ["The jacket still has its tags."],
            "opening": "I want my money back!",
            "success": {"rubric": ["Asks for the order number."]},
        }
    )


def variables(domain, scenario) -> dict[str, dict]:
    """What the roles pass to each template (see strategist/roles/ and strategist/structured.py)."""
    dlg = Dialogue(
        seed=1,
        turns=[
            Turn(role="customer", content="Refund me."),
            Turn(role="student", content="Sorry, store credit only."),
        ],
    )
    return {
        "customer_system.j2": {"domain": domain, "scenario": scenario, "stop_marker": domain.stop_marker},
        "student_system.j2": {"domain": domain, "strategies": [STRATEGY]},
        "bot_system.j2": {"system_prompt": "You are Acme's support bot.", "strategies": [STRATEGY]},
        "judge_policy.j2": {"domain": domain, "strategy": STRATEGY},
        "judge_verdict.j2": {
            "domain": domain,
            "scenario": scenario,
            "transcript": dlg.transcript(numbered=True),
            "rubric": scenario.criteria(domain).rubric,
            "student_turns": 1,
        },
        "judge_rating.j2": {"domain": domain, "scenario": scenario, "transcript": dlg.transcript()},
        "teacher_scenario.j2": {
            "domain": domain,
            "persona": {"mood": "calm", "loyalty": "first-time"},
            "intent": domain.intent("size_exchange"),
            "difficulty": "hard",
            "avoid": ["Simple boot size exchange"],
        },
        "teacher_coach.j2": {
            "domain": domain,
            "scenario": scenario,
            "prefix": "Customer: Refund me.",
            "student_reply": "STUDENT-SAID",
            "reference_reply": "EXPERT-SAID",
            "critique": "CRITIQUE-TEXT",
            "max_strategies": 2,
        },
        "judge_pairwise.j2": {
            "domain": domain,
            "scenario": scenario,
            "first": "Customer: Refund me.\nAgent: FIRST-SAID",
            "second": "Customer: Refund me.\nAgent: SECOND-SAID",
        },
        "teacher_contrast.j2": {
            "domain": domain,
            "scenario": scenario,
            "best": "Customer: Refund me.\nAgent: BEST-SAID",
            "worst": "Customer: Refund me.\nAgent: WORST-SAID",
            "best_score": 0.9,
            "worst_score": 0.2,
            "best_critique": "BEST-CRITIQUE",
            "worst_critique": "WORST-CRITIQUE",
            "max_strategies": 2,
        },
        "structured_output.j2": {"schema": '{"type":"object"}'},
        "tools_prompted.j2": {
            "system": "You are the agent.",
            "tools": [{"name": "get_order", "params": "order_id: string", "description": "Look one up."}],
        },
        "reask.j2": {"error": "a: field required"},
        "teacher_harvest.j2": {
            "domain": domain,
            "transcript": dlg.transcript(numbered=True),
            "weak_turn": 1,
            "critique": "Refused without offering store credit.",
            "outcome": "outcome: unresolved; customer satisfaction 1",
            "persona": scenario.persona,
            "intent": domain.intent(scenario.intent),
        },
    }


def test_every_shipped_template_is_covered(northwind, scenario):
    shipped = {p.name for p in PROMPTS_DIR.glob("*.j2")}
    assert shipped == set(variables(northwind, scenario))


@pytest.mark.parametrize("name", sorted(p.name for p in PROMPTS_DIR.glob("*.j2")))
def test_every_template_renders_with_what_the_code_passes(name, northwind, scenario):
    text = render(name, **variables(northwind, scenario)[name])
    assert text
    assert text == text.strip()
    assert "{{" not in text and "{%" not in text


@pytest.mark.parametrize(
    "name",
    [
        "student_system.j2",
        "judge_verdict.j2",
        "judge_rating.j2",
        "judge_pairwise.j2",
        "teacher_scenario.j2",
        "teacher_coach.j2",
        "teacher_contrast.j2",
    ],
)
def test_policy_is_in_prompts_that_need_it(name, northwind, scenario):
    text = render(name, **variables(northwind, scenario)[name])
    assert northwind.policy.strip() in text
    assert "Northwind Outfitters" in text


def test_student_prompt_without_strategies_has_no_strategies_section(northwind):
    text = Student(ScriptedModel(), northwind).system_prompt([])
    assert "STRATEGIES" not in text
    assert "<strategies>" not in text
    assert northwind.policy.strip() in text
    assert northwind.agent_role.strip() in text


def test_student_prompt_lists_strategies_when_given(northwind):
    text = Student(ScriptedModel(), northwind).system_prompt([STRATEGY, STRATEGY_NO_EXAMPLE])
    assert "STRATEGIES" in text
    assert "<strategies>" in text and "</strategies>" in text
    assert "1. When: When the customer asks for cash after day 30" in text
    assert "Do: Offer store credit instead of a card refund." in text
    assert 'Example: "I can offer store credit for this return."' in text
    assert "2. When: When a code is requested" in text
    assert text.count("Example:") == 1
    # strategies come after the policy
    assert text.index("<strategies>") > text.index(northwind.policy.strip())


def test_the_student_reuses_a_prompt_only_for_the_same_strategies(northwind):
    student = Student(ScriptedModel(), northwind)
    first = student.system_prompt([STRATEGY])
    assert student.system_prompt([STRATEGY]) is first  # a dialogue's next turn: not rendered again
    other = student.system_prompt([STRATEGY_NO_EXAMPLE])
    assert "When a code is requested" in other and "cash after day 30" not in other
    assert student.system_prompt([STRATEGY], tools=True) == render(
        "student_system.j2", domain=northwind, strategies=[STRATEGY], tools=True
    )
    assert student.system_prompt([]) == render(
        "student_system.j2", domain=northwind, strategies=[], tools=False
    )


def test_the_customer_reuses_its_prompt_per_scenario(northwind, scenario):
    customer = Customer(ScriptedModel(), northwind)
    first = customer.messages(scenario, [])[0]["content"]
    assert customer.messages(scenario, [])[0]["content"] is first
    changed = scenario.model_copy(update={"goal": "Get a different thing entirely."})
    assert "Get a different thing entirely." in customer.messages(changed, [])[0]["content"]
    assert customer.messages(scenario, [])[0]["content"] is first


def test_customer_prompt(northwind, scenario):
    msgs = Customer(ScriptedModel(), northwind).messages(scenario, [])
    system, cue = msgs
    assert cue["role"] == "user"  # chat templates want the first turn after the system to be the user's
    text = system["content"]
    assert system["role"] == "system"
    assert text.rstrip().endswith(northwind.stop_marker)
    assert "###STOP###" in text
    assert "Northwind Outfitters" in text
    assert scenario.goal in text
    assert "mood: angry; tech_savvy: low; loyalty: long-time" in text
    assert "Order NW-48213, email dana@example.com" in text
    # hidden facts are labelled reveal-only-when-asked, and come after that label
    label = "Facts you reveal ONLY if the agent asks about them:"
    assert label in text
    assert text.index(label) < text.index("The jacket still has its tags.")
    assert text.index("may state freely") < text.index("Order NW-48213")
    assert text.index("Order NW-48213") < text.index(label)
    # the customer's prompt carries no company policy
    assert northwind.policy.strip() not in text


def test_customer_prompt_without_facts_has_no_fact_sections(northwind, scenario):
    bare = scenario.model_copy(update={"known_facts": [], "hidden_facts": []})
    text = render("customer_system.j2", domain=northwind, scenario=bare, stop_marker="<END>")
    assert "ONLY if the agent asks" not in text
    assert "may state freely" not in text
    assert text.endswith("<END>")


def test_customer_messages_swap_roles(northwind, scenario):
    turns = [Turn(role="customer", content="hi"), Turn(role="student", content="hello")]
    msgs = Customer(ScriptedModel(), northwind).messages(scenario, turns)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in msgs[2:]] == ["hi", "hello"]


def test_judge_verdict_numbers_rubric_items(northwind, scenario):
    v = variables(northwind, scenario)["judge_verdict.j2"]
    v["rubric"] = ["First item", "Second item"]
    v["student_turns"] = 4
    text = render("judge_verdict.j2", **v)
    assert "1. First item" in text
    assert "2. Second item" in text
    assert "(1 to 4)" in text
    assert "Agent (turn 1): Sorry, store credit only." in text


def test_teacher_scenario_prompt(northwind, scenario):
    v = variables(northwind, scenario)["teacher_scenario.j2"]
    text = render("teacher_scenario.j2", **v)
    assert "mood: calm; loyalty: first-time" in text
    assert northwind.intent("size_exchange").description in text
    assert "Difficulty: hard" in text
    assert "- Simple boot size exchange" in text
    v["avoid"] = []
    assert "must differ from" not in render("teacher_scenario.j2", **v)


def test_teacher_coach_prompt(northwind, scenario):
    text = render("teacher_coach.j2", **variables(northwind, scenario)["teacher_coach.j2"])
    for part in ("STUDENT-SAID", "EXPERT-SAID", "CRITIQUE-TEXT", "Customer: Refund me.", "1 to 2 strategies"):
        assert part in text


def test_teacher_harvest_prompt_with_and_without_the_customer_known(northwind, scenario):
    v = variables(northwind, scenario)["teacher_harvest.j2"]
    text = render("teacher_harvest.j2", **v)
    assert "Agent (turn 1): Sorry, store credit only." in text
    assert "went wrong at its turn 1" in text and "WHAT WENT WRONG: Refused" in text
    assert "HOW IT ENDED: outcome: unresolved" in text
    assert "mood: angry" in text and "Intents:" not in text
    assert "NORTHWIND OUTFITTERS - CHAT SUPPORT POLICY" in text
    unknown = render(
        "teacher_harvest.j2", **{**v, "weak_turn": None, "persona": None, "intent": None, "outcome": ""}
    )
    assert "Name the agent turn where it went wrong" in unknown and "weakest_turn" in unknown
    assert "- refund_late_return: Wants a cash refund" in unknown
    assert "HOW IT ENDED" not in unknown


def test_structured_and_reask_templates():
    assert '{"type":"object"}' in render("structured_output.j2", schema='{"type":"object"}')
    assert "a: field required" in render("reask.j2", error="a: field required")


def test_teacher_scenario_cell_persona_renders(northwind):
    cell = Cell({"mood": "angry", "tech_savvy": "high", "loyalty": "long-time"}, "damaged_item")
    text = render(
        "teacher_scenario.j2",
        domain=northwind,
        persona=cell.persona,
        intent=northwind.intent(cell.intent),
        difficulty="easy",
        avoid=[],
    )
    assert "mood: angry; tech_savvy: high; loyalty: long-time" in text


# --- errors and overrides ------------------------------------------------------------------------------


def test_missing_variable_raises_config_error_naming_template(northwind, scenario):
    with pytest.raises(ConfigError) as info:
        render("customer_system.j2", domain=northwind, scenario=scenario)
    assert "customer_system.j2" in str(info.value)
    assert "stop_marker" in str(info.value)


def test_missing_variable_in_condition_raises(northwind):
    with pytest.raises(ConfigError, match=r"student_system\.j2"):
        render("student_system.j2", domain=northwind)


def test_unknown_template_raises_config_error():
    with pytest.raises(ConfigError, match=r"no_such_prompt\.j2"):
        render("no_such_prompt.j2")


def test_user_directory_overrides_one_template(tmp_path, northwind):
    (tmp_path / "student_system.j2").write_text("CUSTOM for {{ domain.company }}\n", encoding="utf-8")
    set_prompt_dirs(tmp_path)
    assert render("student_system.j2", domain=northwind, strategies=[]) == "CUSTOM for Northwind Outfitters"
    # other templates still come from the package
    assert "could not be used" in render("reask.j2", error="x")
    set_prompt_dirs()
    assert render("student_system.j2", domain=northwind, strategies=[]).startswith("You are ")


def test_first_user_directory_wins(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (first / "reask.j2").write_text("ONE {{ error }}", encoding="utf-8")
    (second / "reask.j2").write_text("TWO {{ error }}", encoding="utf-8")
    set_prompt_dirs(first, second)
    assert render("reask.j2", error="e") == "ONE e"


def test_env_directory_overrides(tmp_path, monkeypatch):
    (tmp_path / "reask.j2").write_text("ENV {{ error }}", encoding="utf-8")
    monkeypatch.setenv("STRATEGIST_PROMPTS_DIR", str(tmp_path))
    set_prompt_dirs()  # clears the cached environment
    assert render("reask.j2", error="e") == "ENV e"


def test_syntax_error_in_user_template_is_a_strategist_error(tmp_path):
    (tmp_path / "reask.j2").write_text("Broken {% if error %} never closed", encoding="utf-8")
    set_prompt_dirs(tmp_path)
    with pytest.raises(StrategistError, match=r"reask\.j2"):
        render("reask.j2", error="e")


def test_judge_prompts_share_their_opening(northwind, scenario):
    # The embedded model re-uses the longest prefix its context holds: every judge prompt starts
    # with the same reviewer line, policy and situation, so only the rest is evaluated again.
    v = variables(northwind, scenario)
    texts = [render(n, **v[n]) for n in ("judge_verdict.j2", "judge_rating.j2", "judge_pairwise.j2")]
    head = texts[0][: texts[0].index("THE CUSTOMER'S SITUATION")]
    assert all(t.startswith(head) for t in texts) and northwind.policy.strip() in head


def test_pairwise_prompt_shows_both_dialogues_in_order(northwind, scenario):
    text = render("judge_pairwise.j2", **variables(northwind, scenario)["judge_pairwise.j2"])
    assert text.index("CONVERSATION A:") < text.index("FIRST-SAID") < text.index("CONVERSATION B:")
    assert text.index("SECOND-SAID") > text.index("CONVERSATION B:")
    assert "A, B, or T" in text


def test_contrast_prompt_shows_the_best_and_the_worst_run(northwind, scenario):
    text = render("teacher_contrast.j2", **variables(northwind, scenario)["teacher_contrast.j2"])
    for part in ("BEST-SAID", "WORST-SAID", "BEST-CRITIQUE", "WORST-CRITIQUE", "score 0.90", "score 0.20"):
        assert part in text
    assert text.index("BEST-SAID") < text.index("WORST-SAID")
