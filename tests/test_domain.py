"""Domains, scenarios, checks and the YAML loaders (strategist/core/domain.py, strategist/packs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from strategist.core.domain import Check, Domain, Scenario, SuccessCriteria, persona_key
from strategist.errors import InputError
from strategist.packs import load_domain, load_scenario_set

ROOT = Path(__file__).resolve().parent.parent
NORTHWIND = ROOT / "scenarios" / "northwind"


def domain_data(**overrides):
    data = {
        "id": "acme",
        "name": "Acme support",
        "company": "Acme",
        "agent_role": "You are Acme's support agent.",
        "policy": "Refunds within 30 days only.",
        "persona_dimensions": {"mood": ["calm", "angry"], "loyalty": ["new", "old"]},
        "intents": [
            {"id": "refund", "description": "Wants a refund."},
            {"id": "exchange", "description": "Wants an exchange."},
        ],
    }
    data.update(overrides)
    return data


def scenario_data(**overrides):
    data = {
        "title": "Late refund",
        "intent": "refund",
        "persona": {"mood": "calm"},
        "goal": "Get a refund.",
        "opening": "I want my money back.",
    }
    data.update(overrides)
    return data


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def acme() -> Domain:
    return Domain.model_validate(domain_data())


# --- the shipped pack ---------------------------------------------------------------------------


def test_shipped_northwind_domain_loads():
    d = load_domain(NORTHWIND / "domain.yaml")
    assert d.id == "northwind"
    assert d.company == "Northwind Outfitters"
    assert "SORRY10" in d.policy
    assert len(d.intents) == 8
    assert len({i.id for i in d.intents}) == 8
    assert d.persona_dimensions["mood"] == ["calm", "impatient", "angry"]
    assert d.max_turns == 6
    assert d.stop_marker == "###STOP###"
    assert d.success_criteria.must_not_say, "domain-wide must_not_say checks are expected"
    assert d.success_criteria.rubric


def test_shipped_northwind_scenarios_fit_the_domain():
    d = load_domain(NORTHWIND / "domain.yaml")
    domain_id, scenarios = load_scenario_set(NORTHWIND / "scenarios.yaml", d)
    assert domain_id == "northwind"
    assert len(scenarios) >= 10
    intents = {i.id for i in d.intents}
    for s in scenarios:
        assert s.domain == "northwind"
        assert s.problems_with(d) == []
        assert s.intent in intents
        assert set(s.persona) == set(d.persona_dimensions)
    splits = {s.split for s in scenarios}
    assert {"train", "test"} <= splits
    # every intent of the domain has at least one scenario
    assert {s.intent for s in scenarios} == intents


def test_shipped_domain_regex_check_allows_only_sorry10(northwind):
    regex = next(c for c in northwind.success_criteria.must_not_say if c.regex)
    assert not regex.found_in("You can use the code SORRY10 on your next order.")
    assert regex.found_in("Here is SORRY20 for the trouble.")
    assert regex.found_in("Use VIP15 at checkout.")
    assert regex.found_in("use welcome5")  # case-insensitive


# --- Check ----------------------------------------------------------------------------------------


def test_literal_check_is_case_insensitive_and_whitespace_normalised():
    c = Check(text="Store   Credit")
    assert c.found_in("I can offer you STORE CREDIT instead.")
    assert c.found_in("I can offer you store\n   credit instead.")
    assert not c.found_in("I can offer you a store voucher.")


def test_literal_check_is_not_a_regex():
    c = Check(text="$40 (one time)")
    assert c.found_in("I refunded $40 (one time) to your card.")
    assert not c.found_in("I refunded 40 one time to your card.")


def test_regex_check_is_case_insensitive():
    c = Check(regex=r"\bNW-\d{5}\b")
    assert c.found_in("Your order nw-12345 is on its way")
    assert not c.found_in("Your order NW-123 is on its way")


def test_invalid_regex_is_rejected():
    with pytest.raises(ValidationError, match="invalid regex"):
        Check(regex="(unclosed")


@pytest.mark.parametrize("kwargs", [{}, {"text": "a", "regex": "a"}])
def test_check_needs_exactly_one_of_text_or_regex(kwargs):
    with pytest.raises(ValidationError, match="exactly one"):
        Check(**kwargs)


def test_empty_literal_text_is_rejected():
    with pytest.raises(ValidationError):
        Check(text="   ")


def test_check_label():
    assert Check(text="hello").label == "hello"
    assert Check(regex="a+b").label == "/a+b/"
    assert Check(regex="a+b", description="says ab").label == "says ab"


def test_plain_strings_become_literal_checks():
    sc = SuccessCriteria.model_validate({"must_say": ["store credit"], "must_not_say": [{"regex": "x+"}]})
    assert sc.must_say == [Check(text="store credit")]
    assert sc.must_not_say == [Check(regex="x+")]


# --- SuccessCriteria.merged_with ---------------------------------------------------------------------


def test_merged_with_puts_domain_defaults_first_without_repeats():
    defaults = SuccessCriteria.model_validate(
        {"must_say": ["hello"], "must_not_say": ["I guarantee", {"regex": "VIP\\d+"}], "rubric": ["r1", "r2"]}
    )
    own = SuccessCriteria.model_validate(
        {
            "must_say": ["store credit", "hello"],
            "must_not_say": ["I guarantee", "refund issued"],
            "rubric": ["r2", "r3"],
        }
    )
    merged = own.merged_with(defaults)
    assert [c.label for c in merged.must_say] == ["hello", "store credit"]
    assert [c.label for c in merged.must_not_say] == ["I guarantee", "/VIP\\d+/", "refund issued"]
    assert merged.rubric == ["r1", "r2", "r3"]
    # neither input is changed
    assert [c.label for c in own.must_say] == ["store credit", "hello"]
    assert defaults.rubric == ["r1", "r2"]


def test_scenario_criteria_merge_domain_defaults(northwind):
    s = Scenario.model_validate(
        scenario_data(
            intent="size_exchange", persona={}, success={"must_say": ["exchange"], "rubric": ["own item"]}
        )
    )
    crit = s.criteria(northwind)
    assert crit.rubric[: len(northwind.success_criteria.rubric)] == northwind.success_criteria.rubric
    assert crit.rubric[-1] == "own item"
    assert crit.must_not_say == northwind.success_criteria.must_not_say
    assert [c.label for c in crit.must_say] == ["exchange"]


# --- Domain validation -----------------------------------------------------------------------------


def test_domain_rejects_duplicate_intent_ids():
    intents = [{"id": "refund", "description": "a"}, {"id": "refund", "description": "b"}]
    with pytest.raises(ValidationError, match="duplicate intent id: refund"):
        Domain.model_validate(domain_data(intents=intents))


def test_domain_rejects_empty_persona_dimension():
    with pytest.raises(ValidationError, match="dimension 'mood' needs at least one value"):
        Domain.model_validate(domain_data(persona_dimensions={"mood": []}))


def test_domain_rejects_no_persona_dimensions_and_no_intents():
    with pytest.raises(ValidationError):
        Domain.model_validate(domain_data(persona_dimensions={}))
    with pytest.raises(ValidationError):
        Domain.model_validate(domain_data(intents=[]))


def test_domain_intent_lookup(acme):
    assert acme.intent("exchange").description == "Wants an exchange."
    with pytest.raises(KeyError):
        acme.intent("nope")


def test_scenario_problems_with_domain(acme):
    ok = Scenario.model_validate(scenario_data())
    assert ok.problems_with(acme) == []
    bad = Scenario.model_validate(scenario_data(intent="teleport", persona={"mood": "giddy", "age": "old"}))
    fields = [f for f, _ in bad.problems_with(acme)]
    assert fields == ["intent", "persona.mood", "persona.age"]


def test_scenario_turns_limit_and_cell(acme):
    s = Scenario.model_validate(scenario_data(persona={"mood": "calm", "loyalty": "old"}))
    assert s.turns_limit(acme) == acme.max_turns
    assert s.model_copy(update={"max_turns": 2}).turns_limit(acme) == 2
    assert s.cell == ("loyalty=old, mood=calm", "refund")
    assert persona_key({"b": "2", "a": "1"}) == "a=1, b=2"


# --- loader errors --------------------------------------------------------------------------------


def test_missing_policy_names_file_and_field(tmp_path):
    data = domain_data()
    del data["policy"]
    path = write_yaml(tmp_path / "domain.yaml", data)
    with pytest.raises(InputError) as info:
        load_domain(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "policy" in msg
    assert info.value.field == "policy"
    assert info.value.source == str(path)


def test_bad_intent_slug_names_indexed_field(tmp_path):
    intents = [{"id": "refund", "description": "a"}, {"id": "Bad Slug!", "description": "b"}]
    data = domain_data(intents=intents)
    path = write_yaml(tmp_path / "domain.yaml", data)
    with pytest.raises(InputError) as info:
        load_domain(path)
    assert str(path) in str(info.value)
    assert "intents[1].id" in str(info.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "domain.yaml"
    path.write_text("id: acme\nname: Acme\npolicy: [unclosed\ncompany: Acme\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_domain(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "invalid YAML" in msg
    assert "line 4" in msg


def test_top_level_list_is_a_clear_error(tmp_path):
    path = tmp_path / "domain.yaml"
    path.write_text("- id: acme\n- name: Acme\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_domain(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "expected a mapping at the top level" in msg
    assert "list" in msg


def test_missing_file_is_an_input_error(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match="file not found") as info:
        load_domain(path)
    assert str(path) in str(info.value)


def test_scenario_with_unknown_intent_names_field(tmp_path, acme):
    path = write_yaml(
        tmp_path / "scenarios.yaml", {"domain": "acme", "scenarios": [scenario_data(intent="teleport")]}
    )
    with pytest.raises(InputError) as info:
        load_scenario_set(path, acme)
    msg = str(info.value)
    assert str(path) in msg
    assert "scenarios[0].intent" in msg
    assert "teleport" in msg


def test_scenario_with_persona_value_outside_dimension_names_field(tmp_path, acme):
    ok = scenario_data()
    bad = scenario_data(persona={"mood": "giddy"})
    path = write_yaml(tmp_path / "scenarios.yaml", {"domain": "acme", "scenarios": [bad, ok]})
    with pytest.raises(InputError) as info:
        load_scenario_set(path, acme)
    assert "scenarios[0].persona.mood" in str(info.value)
    assert "giddy" in str(info.value)

    path = write_yaml(tmp_path / "scenarios2.yaml", {"domain": "acme", "scenarios": [ok, bad]})
    with pytest.raises(InputError, match=r"scenarios\[1\]\.persona\.mood"):
        load_scenario_set(path, acme)


def test_scenario_set_for_another_domain_is_rejected(tmp_path, acme):
    path = write_yaml(tmp_path / "scenarios.yaml", {"domain": "other", "scenarios": [scenario_data()]})
    with pytest.raises(InputError) as info:
        load_scenario_set(path, acme)
    assert str(path) in str(info.value)
    assert info.value.field == "domain"
    assert "other" in str(info.value) and "acme" in str(info.value)


def test_scenario_set_without_domain_check_is_not_validated_against_one(tmp_path):
    path = write_yaml(
        tmp_path / "scenarios.yaml", {"domain": "other", "scenarios": [scenario_data(intent="anything")]}
    )
    domain_id, scenarios = load_scenario_set(path)
    assert domain_id == "other"
    assert [s.domain for s in scenarios] == ["other"]
    assert scenarios[0].intent == "anything"


def test_scenario_schema_error_names_indexed_field(tmp_path, acme):
    bad = scenario_data(difficulty="impossible")
    path = write_yaml(tmp_path / "scenarios.yaml", {"domain": "acme", "scenarios": [scenario_data(), bad]})
    with pytest.raises(InputError, match=r"scenarios\[1\]\.difficulty"):
        load_scenario_set(path, acme)


def test_empty_scenario_list_is_rejected(tmp_path):
    path = write_yaml(tmp_path / "scenarios.yaml", {"domain": "acme", "scenarios": []})
    with pytest.raises(InputError, match="scenarios"):
        load_scenario_set(path)
