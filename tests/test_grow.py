"""The grow loop and the gate on scripted models: deterministic, offline."""

from __future__ import annotations

import json

import pytest
import world

from strategist.core.domain import Scenario
from strategist.core.gate import GateConfig
from strategist.engine.grow import GrowConfig, Grower
from strategist.engine.ledger import Budget
from strategist.models import ScriptedModel
from strategist.store.tables import LlmCallRow


def _scenario(
    domain,
    title="Late refund",
    intent="refund_late_return",
    split="train",
    goal="Get a card refund for a jacket delivered 45 days ago.",
    **kw,
) -> Scenario:
    return Scenario(
        domain=domain.id,
        title=title,
        intent=intent,
        persona={"mood": "angry"},
        goal=goal,
        known_facts=["Order NW-48213"],
        opening="I want my money back for this jacket.",
        split=split,
        **kw,
    )


def _config(**kw) -> GrowConfig:
    gate = GateConfig(
        samples=kw.pop("samples", 4), variants=kw.pop("variants", 0), regression=kw.pop("regression", 0)
    )
    base = {"rounds": 1, "scenarios": 1, "generate": 0, "max_strategies": 1, "gate": gate}
    base.update(kw)
    return GrowConfig(**base)


async def _grow(store, domain, proposal, **kw):
    customer = kw.pop("customer", None)
    teacher = kw.pop("teacher", None)
    grower = Grower(store, domain, world.models(proposal, customer, teacher), _config(**kw))
    return grower, await grower.run()


@pytest.fixture
def domain(store, northwind):
    d = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(d)
    return d


async def test_gate_accepts_a_strategy_that_helps(store, domain):
    source = store.add_scenario(_scenario(domain))
    _, summary = await _grow(store, domain, world.HELPFUL)

    assert summary.status == "completed"
    assert (summary.candidates, summary.accepted, summary.rejected) == (1, 1, 0)
    [row] = store.list_strategies(domain.id)
    assert row.status == "pending" and row.version == 1
    assert row.trigger == world.HELPFUL["trigger"]
    ev = row.evidence
    assert len(ev["deltas"]) == 4 and all(d > 0 for d in ev["deltas"])
    assert ev["ci_low"] > 0 and ev["mean_delta"] == pytest.approx(sum(ev["deltas"]) / 4)
    # Every pair points at two stored, judged dialogues of the same scenario with the same seed.
    for pair in ev["pairs"]:
        without, with_ = (
            store.get_dialogue(pair["without_dialogue_id"]),
            store.get_dialogue(pair["with_dialogue_id"]),
        )
        assert without.scenario_id == with_.scenario_id == source.id
        assert without.seed == with_.seed == pair["seed"]
        assert without.condition == "baseline" and with_.condition == "candidate"
        assert store.judgement_for(with_.id).score == pytest.approx(pair["with_score"])
        # The candidate is recorded on every student turn it was present for, and only there.
        assert all(
            t.strategies == [f"candidate:{row.provenance['candidate_id']}"] for t in with_.student_turns
        )
        assert all(t.strategies == [] for t in without.student_turns)
    assert row.provenance["scenario_id"] == source.id
    assert row.provenance["teacher_model"] == "scripted/teacher"
    assert [r.action for r in store.reviews(row.id)] == ["created"]
    assert len(store.strategy_versions(row.id)) == 1


async def test_gate_rejects_a_strategy_that_hurts(store, domain):
    store.add_scenario(_scenario(domain))
    _, summary = await _grow(store, domain, world.HARMFUL)
    assert (summary.candidates, summary.accepted, summary.rejected) == (1, 0, 1)
    assert store.list_strategies(domain.id) == []
    [cand] = store.list_candidates()
    assert cand.outcome == "rejected"
    assert cand.evidence["mean_delta"] < 0
    assert "no clear improvement" in cand.reason


async def test_gate_rejects_a_strategy_that_does_nothing(store, domain):
    store.add_scenario(_scenario(domain))
    _, summary = await _grow(store, domain, world.USELESS)
    assert summary.accepted == 0 and summary.rejected == 1
    [cand] = store.list_candidates()
    assert cand.evidence["deltas"] == [0.0, 0.0, 0.0, 0.0]
    # No spread: the upper bound is the mean (0: it cannot help), the lower one assumes some spread.
    assert cand.evidence["ci_high"] == 0.0 and cand.evidence["ci_low"] < 0


async def test_gate_rejects_a_strategy_that_hurts_other_scenarios(store, domain, monkeypatch):
    # The strategy helps its own scenario, but the judge counts the same phrase as a policy break on
    # a final-sale scenario of another intent: the regression set must catch it.
    store.add_scenario(_scenario(domain))
    store.add_scenario(
        _scenario(
            domain,
            title="Final sale",
            intent="final_sale_return",
            goal="FINAL-SALE: return a clearance tent.",
        )
    )
    scenario_blind = world.judge_fn

    def judge(messages, sampling):
        text = messages[0]["content"]
        if "FINAL-SALE" in text and world.GOOD_PHRASE in text.split("CONVERSATION")[-1]:
            if sampling.json_schema:
                return json.dumps(
                    {
                        "passed": [False] * 4,
                        "weakest_turn": 1,
                        "critique": "offered credit on a final-sale item",
                    }
                )
            return "1"
        return scenario_blind(messages, sampling)

    monkeypatch.setattr(world, "judge_fn", judge)
    await _grow(store, domain, world.HELPFUL, regression=1, scenarios=1)
    [cand] = store.list_candidates()
    assert cand.outcome == "rejected", cand.reason
    assert "hurts other scenarios" in cand.reason
    assert cand.evidence["ci_low"] > 0  # it did help its own scenario
    assert cand.evidence["regression_mean"] < -0.05
    assert any(p["regression"] for p in cand.evidence["pairs"])


async def test_same_customer_seeds_on_both_sides(store, domain):
    store.add_scenario(_scenario(domain))
    customer = world.Customer()
    await _grow(store, domain, world.HELPFUL, customer=customer, samples=2)
    # Two selection dialogues, then the gate's pairs on fresh samples: without, with, without, with;
    # two pairs are fewer than the gate's minimum, so it takes a second batch of two fresh seeds.
    selection, gate = customer.seeds[:2], customer.seeds[2:]
    assert len(gate) == 8
    assert all(gate[i] == gate[i + 1] for i in range(0, 8, 2))
    assert len(set(gate)) == 4
    # The samples that made the scenario look weak are not reused to judge the candidate.
    assert not set(selection) & set(gate)


async def test_stop_marker_ends_the_dialogue(store, northwind):
    from strategist.engine.simulate import simulate
    from strategist.roles import Customer, Student

    d = northwind.model_copy(update={"max_turns": 6})
    m = world.models(world.HELPFUL, customer=world.Customer(stop_after=2))
    sc = _scenario(d).model_copy(update={"id": 1})
    dialogue = await simulate(sc, d, Student(m.student, d), Customer(m.customer, d), seed=7)
    assert dialogue.ended_by == "stop_marker"
    # opening, agent, customer (marker stripped), agent, customer's final words
    assert [t.role for t in dialogue.turns] == ["customer", "student", "customer", "student", "customer"]
    assert dialogue.turns[-1].content == "Fine, thanks."
    assert all("###STOP###" not in t.content for t in dialogue.turns)


async def test_max_turns_ends_the_dialogue(store, northwind):
    from strategist.engine.simulate import simulate
    from strategist.roles import Customer, Student

    d = northwind.model_copy(update={"max_turns": 3})
    m = world.models(world.HELPFUL)
    dialogue = await simulate(
        _scenario(d).model_copy(update={"id": 1}), d, Student(m.student, d), Customer(m.customer, d), seed=1
    )
    assert dialogue.ended_by == "max_turns"
    assert len(dialogue.student_turns) == 3


async def test_model_error_ends_a_dialogue_without_crashing(store, northwind):
    from strategist.engine.simulate import simulate
    from strategist.errors import ModelError
    from strategist.roles import Customer, Student

    student = ScriptedModel(["Hello, how can I help?", ModelError("scripted", "connection reset")])
    m = world.models(world.HELPFUL)
    d = northwind.model_copy(update={"max_turns": 3})
    dialogue = await simulate(
        _scenario(d).model_copy(update={"id": 1}), d, Student(student, d), Customer(m.customer, d), seed=1
    )
    assert dialogue.ended_by == "error" and "connection reset" in (dialogue.error or "")
    assert len(dialogue.student_turns) == 1


async def test_budget_stops_the_run_with_state_saved(store, domain):
    store.add_scenario(_scenario(domain))
    grower, summary = await _grow(store, domain, world.HELPFUL, budget=Budget(max_calls=9))
    assert summary.status == "stopped"
    assert "calls 9 of 9" in (summary.stop_reason or "")
    run = store.get_run(grower.run_id)
    assert run.status == "stopped" and run.finished_at is not None
    assert run.summary["llm_calls"] == 9
    assert store.count(LlmCallRow, run_id=grower.run_id) == 9
    # Each full dialogue costs 3 student/customer calls + 2 judge calls: the first ones are kept.
    assert summary.dialogues >= 1
    assert [e.kind for e in store.events(grower.run_id)][-1] == "budget"
    # The database is still usable: a second run completes and sees the first run's scenarios.
    _, again = await _grow(store, domain, world.HELPFUL)
    assert again.status == "completed" and again.accepted == 1


async def test_token_budget(store, domain):
    store.add_scenario(_scenario(domain))
    _, summary = await _grow(store, domain, world.HELPFUL, budget=Budget(max_tokens=500))
    assert summary.status == "stopped" and "tokens" in (summary.stop_reason or "")
    assert summary.tokens >= 500


async def test_invalid_teacher_json_is_reasked_then_recorded(store, domain):
    teacher = world.Teacher(world.HELPFUL, scenario_replies=["not json", '{"title": 3}', "{broken"])
    grower, summary = await _grow(store, domain, world.HELPFUL, teacher=teacher, generate=1, scenarios=1)
    assert teacher.scenario_calls == 3  # asked, then re-asked twice
    assert summary.status == "completed"
    assert summary.scenarios_generated == 0 and summary.failures == 1
    [event] = [e for e in store.events(grower.run_id) if e.kind == "failure"]
    assert "writing a scenario" in event.message
    assert event.detail["attempts"] == 3 and event.detail["last_output"] == "{broken"
    # The re-ask showed the model its own output and the validation error.
    calls = grower.teacher.model.inner.calls
    assert calls[1].messages[-2] == {"role": "assistant", "content": "not json"}
    assert "could not be used" in calls[1].messages[-1]["content"]


async def test_teacher_recovers_after_one_bad_answer(store, domain):
    teacher = world.Teacher(world.HELPFUL, scenario_replies=["oops"])
    _, summary = await _grow(store, domain, world.HELPFUL, teacher=teacher, generate=1, scenarios=1)
    assert teacher.scenario_calls == 2
    assert summary.scenarios_generated == 1 and summary.failures == 0
    [s] = store.list_scenarios(domain.id)
    assert s.origin == "generated" and s.split == "train"


async def test_near_duplicate_scenarios_are_dropped(store, domain):
    _, summary = await _grow(store, domain, world.HELPFUL, generate=2, scenarios=2)
    # The scripted teacher writes the same scenario twice (only the title differs).
    assert summary.scenarios_generated == 1
    grower_events = [e.message for e in store.events(summary.run_id)]
    assert any("near-duplicate" in m for m in grower_events)


async def test_similar_proposals_are_merged_not_gated(store, domain):
    store.add_scenario(_scenario(domain))
    await _grow(store, domain, world.HELPFUL)
    store.add_scenario(_scenario(domain, title="Another late refund"))
    _, second = await _grow(store, domain, world.HELPFUL)
    assert second.merged == 1 and second.accepted == 0
    cands = store.list_candidates(second.run_id)
    assert cands[0].outcome == "merged" and cands[0].strategy_id == store.list_strategies()[0].id
    assert len(store.list_strategies()) == 1


async def test_test_split_is_never_used_by_grow(store, domain):
    held_out = store.add_scenario(_scenario(domain, title="Held out", split="test"))
    store.add_scenario(_scenario(domain, title="Train one"))
    store.add_scenario(_scenario(domain, title="Train two", intent="final_sale_return"))
    await _grow(store, domain, world.HELPFUL, scenarios=3, variants=2, regression=2)
    assert store.dialogues_for_scenario(held_out.id or 0) == []


async def test_weak_threshold_skips_good_scenarios(store, domain):
    store.add_scenario(_scenario(domain))
    _, summary = await _grow(store, domain, world.HELPFUL, weak_threshold=0.0)
    assert summary.candidates == 0 and summary.dialogues == 4
