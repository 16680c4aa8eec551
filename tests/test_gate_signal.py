"""The gate's signal: the pairwise judge in both orders, the sequential rule, per-intent regression,
best-vs-worst coaching, simulator faults and the judge that always answers (scripted models)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import world

from strategist.core.dialogue import Dialogue, Turn
from strategist.core.domain import Scenario
from strategist.core.evidence import GateEvidence, PairwiseVote, pair_preference
from strategist.core.faults import FAULT_KINDS, find_faults
from strategist.core.gate import GateConfig, decide_look
from strategist.core.stats import pocock_spending, sequential_look
from strategist.engine.grow import GrowConfig, Grower
from strategist.models import FunctionModel, ScriptedModel
from strategist.models.base import Completion, TokenLogprobs
from strategist.roles.judge import Judge


def _scenario(domain, title="Late refund", intent="refund_late_return", **kw) -> Scenario:
    base = {
        "domain": domain.id,
        "title": title,
        "intent": intent,
        "persona": {"mood": "angry"},
        "goal": "Get a card refund for a jacket delivered 45 days ago.",
        "known_facts": ["Order NW-48213, email dana@example.com"],
        "hidden_facts": ["The jacket was never worn and still has its tags on."],
        "opening": "I want my money back for this jacket.",
        "split": "train",
    }
    base.update(kw)
    return Scenario(**base)


@pytest.fixture
def domain(store, northwind):
    d = northwind.model_copy(update={"max_turns": 2})
    store.upsert_domain(d)
    return d


def _dialogue(*turns: tuple[str, str], ended_by: str = "max_turns") -> Dialogue:
    return Dialogue(
        seed=1,
        turns=[Turn(role=r, content=c) for r, c in turns],  # type: ignore[arg-type]
        ended_by=ended_by,  # type: ignore[arg-type]
    )


# -- the pairwise judge -----------------------------------------------------------------------------
def _logprob_answer(letter: str, p_first: float) -> Completion:
    """A reply whose first token is ``letter``, with probability p_first on A and the rest on B."""
    top = {"A": math.log(p_first), "B": math.log(1 - p_first)}
    return Completion(text=letter, model="scripted/judge", logprobs=[TokenLogprobs(letter, top[letter], top)])


async def test_a_judge_that_always_prefers_the_first_position_gives_ties(northwind):
    sc = _scenario(northwind)
    without = _dialogue(("customer", "Refund me."), ("student", "No."))
    with_ = _dialogue(("customer", "Refund me."), ("student", "I can offer store credit."))

    parsed = Judge(ScriptedModel(["A", "A"]), northwind)
    votes = await parsed.compare(sc, without, with_, seed=1)
    assert [v.order for v in votes] == ["with_first", "without_first"]
    assert [v.winner for v in votes] == ["with", "without"]  # the same position, both times
    assert pair_preference(votes) == 0.0  # a tie, not a win

    biased = Judge(ScriptedModel([_logprob_answer("A", 0.8), _logprob_answer("A", 0.8)]), northwind)
    votes = await biased.compare(sc, without, with_, seed=1)
    assert all(v.method == "logprobs" for v in votes)
    assert votes[0].p_with == pytest.approx(0.8) and votes[1].p_with == pytest.approx(0.2)
    assert pair_preference(votes) == pytest.approx(0.0)


async def test_pairwise_judge_shows_the_candidate_first_then_second(northwind):
    sc = _scenario(northwind)
    without = _dialogue(("customer", "Refund me."), ("student", "WITHOUT-REPLY"))
    with_ = _dialogue(("customer", "Refund me."), ("student", "WITH-REPLY"))
    model = ScriptedModel(["A", "B"])  # the with-dialogue both times
    votes = await Judge(model, northwind).compare(sc, without, with_, seed=3)
    first, second = (c.last for c in model.calls)
    assert first.index("WITH-REPLY") < first.index("WITHOUT-REPLY")
    assert second.index("WITHOUT-REPLY") < second.index("WITH-REPLY")
    assert [v.winner for v in votes] == ["with", "with"] and pair_preference(votes) == 1.0
    assert all(c.sampling.max_tokens <= 2 for c in model.calls)


def test_pair_preference_with_probabilities_averages_both_orders():
    votes = [
        PairwiseVote(order="with_first", answer="A", method="logprobs", p_with=0.9, p_without=0.1, p_tie=0.0),
        PairwiseVote(
            order="without_first", answer="A", method="logprobs", p_with=0.4, p_without=0.6, p_tie=0.0
        ),
    ]
    assert pair_preference(votes) == pytest.approx((0.8 - 0.2) / 2)
    disagree = [
        PairwiseVote(order="with_first", answer="A"),
        PairwiseVote(order="without_first", answer="B"),
    ]
    assert [v.winner for v in disagree] == ["with", "with"] and pair_preference(disagree) == 1.0
    split = [PairwiseVote(order="with_first", answer="B"), PairwiseVote(order="without_first", answer="B")]
    assert pair_preference(split) == 0.0  # one order for each side: a tie


# -- the sequential rule ----------------------------------------------------------------------------
CFG = GateConfig(samples=3, max_samples=12, variants=0, regression=0, min_gain=0.03)


def _run(deltas_per_batch, cfg=CFG):
    values: list[float] = []
    previous = 0.0
    for b, batch in enumerate(deltas_per_batch):
        values += batch
        final = b == cfg.batches - 1
        fraction = len(values) / cfg.cap
        d = decide_look(
            {"score": values}, {}, cfg, fraction=fraction, previous_fraction=previous, final=final
        )
        previous = fraction
        if d.verdict != "continue":
            return d, b + 1
    raise AssertionError("ran out of batches")


def test_sequential_gate_stops_early_on_a_clearly_useless_and_a_clearly_good_candidate():
    useless, batches = _run([[0.0, 0.0, 0.0]] * 4)
    assert (useless.verdict, batches) == ("reject", 1)
    assert "upper bound below" in useless.reason
    good, batches = _run([[0.31, 0.30, 0.29]] * 4)
    assert (good.verdict, batches) == ("accept", 1)
    assert good.looks["score"].low > 0


def test_sequential_gate_runs_to_the_cap_on_a_marginal_candidate():
    rng = np.random.default_rng(4)
    batches = [list(0.04 + rng.normal(0, 0.12, size=3)) for _ in range(4)]
    d, used = _run(batches)
    assert used == 4 and d.verdict == "reject"
    assert "lower bound not above" in d.reason
    assert d.looks["score"].n == 12


def test_looking_after_every_batch_spends_no_more_than_the_budget():
    cfg = GateConfig(confidence=0.95, family=4)
    assert cfg.alpha == pytest.approx(0.05 / 4)
    spent = [pocock_spending(cfg.alpha, t) for t in (0.25, 0.5, 0.75, 1.0)]
    assert spent == sorted(spent) and spent[-1] == pytest.approx(cfg.alpha)
    looks = [
        sequential_look([0.1, -0.1, 0.05, 0.0], alpha=cfg.alpha, fraction=t, previous_fraction=p)
        for p, t in ((0.0, 0.25), (0.25, 0.5))
    ]
    assert sum(look.level for look in looks) <= pocock_spending(cfg.alpha, 0.5) + 1e-12


def test_false_acceptance_of_a_useless_candidate_stays_under_its_level():
    # Null deltas with the spread of a noisy judge, looked at after every batch: at most alpha.
    rng = np.random.default_rng(0)
    cfg = GateConfig(samples=3, max_samples=12, confidence=0.9)  # alpha 0.1: a rate we can see
    accepted = 0
    for _ in range(1500):
        d, _ = _run([list(rng.normal(0, 0.1, size=3)) for _ in range(4)], cfg)
        accepted += d.verdict == "accept"
    assert accepted / 1500 <= cfg.alpha


def test_futility_stops_a_candidate_that_cannot_reach_the_sized_effect_early():
    # Mean about 0 with a judge-like spread: not below min_gain's strict bound at 6 pairs, but
    # clearly short of the +0.1 the gate is sized to find.
    d, used = _run([[0.05, -0.04, 0.02], [-0.03, 0.01, 0.0]] + [[0.0, 0.0, 0.0]] * 2)
    assert (d.verdict, used) == ("reject", 2)
    assert "futile" in d.reason and "+0.100" in d.reason
    # Without the looser bound the same candidate runs on.
    strict = GateConfig(samples=3, max_samples=12, variants=0, regression=0, futility_beta=0.0)
    d, used = _run([[0.05, -0.04, 0.02], [-0.03, 0.01, 0.0]] + [[0.0, 0.0, 0.0]] * 2, strict)
    assert used > 2


def test_futility_drops_a_candidate_of_the_sized_effect_at_most_futility_beta_of_the_time():
    rng = np.random.default_rng(3)
    cfg = GateConfig(samples=3, max_samples=24, variants=0, regression=0)
    futile = 0
    for _ in range(1000):
        d, _ = _run([list(cfg.effect + rng.normal(0, 0.087, size=3)) for _ in range(8)], cfg)
        futile += "futile" in d.reason
    assert futile / 1000 <= cfg.futility_beta


def test_a_regression_intent_that_falls_rejects_a_candidate_with_a_good_mean():
    values = {"score": [0.3, 0.31, 0.29, 0.3]}
    regression = {"final_sale_return": [-0.2, -0.15], "size_exchange": [0.3, 0.35]}
    # The regression set's overall mean is fine (+0.075); one of its intents is not.
    assert np.mean([x for v in regression.values() for x in v]) > 0
    d = decide_look(values, regression, CFG, fraction=0.5, previous_fraction=0.0, final=False)
    assert d.verdict == "reject"
    assert "intent final_sale_return" in d.reason
    assert d.regression_by_intent == {
        "final_sale_return": pytest.approx(-0.175),
        "size_exchange": pytest.approx(0.325),
    }


# -- the gate in a grow run ----------------------------------------------------------------------
def _config(**kw) -> GrowConfig:
    gate = GateConfig(
        samples=kw.pop("samples", 3),
        variants=kw.pop("variants", 0),
        regression=kw.pop("regression", 0),
        max_samples=kw.pop("max_samples", 12),
        signal=kw.pop("signal", "score"),
    )
    base = {"rounds": 1, "scenarios": 1, "generate": 0, "max_strategies": 1, "gate": gate}
    base.update(kw)
    return GrowConfig(**base)


async def test_pairwise_gate_accepts_a_helpful_candidate_and_stores_both_verdicts(store, domain):
    store.add_scenario(_scenario(domain))
    grower = Grower(store, domain, world.models(world.HELPFUL), _config(signal="pairwise"))
    summary = await grower.run()
    assert summary.accepted == 1
    [row] = store.list_strategies(domain.id)
    e = GateEvidence.from_stored(row.evidence)
    assert e.signal == "pairwise" and e.pairwise_mean == 1.0 and e.pairwise_low > 0
    for p in e.target_pairs:
        assert [v.order for v in p.pairwise] == ["with_first", "without_first"]
        assert [v.winner for v in p.pairwise] == ["with", "with"] and p.preference == 1.0
    assert e.batches and e.batches[-1].verdict == "accept"


async def test_gate_stops_after_one_batch_on_a_useless_candidate(store, domain):
    store.add_scenario(_scenario(domain))
    summary = await Grower(store, domain, world.models(world.USELESS), _config()).run()
    [cand] = store.list_candidates()
    e = GateEvidence.from_stored(cand.evidence)
    assert cand.outcome == "rejected" and len(e.batches) == 1 and e.n_pairs == 3
    assert summary.gate_pairs == 3


async def test_a_candidate_that_hurts_one_regression_intent_is_rejected(store, domain, monkeypatch):
    store.add_scenario(_scenario(domain))
    store.add_scenario(
        _scenario(domain, title="Clearance", intent="final_sale_return", goal="FINAL-SALE tent")
    )
    store.add_scenario(_scenario(domain, title="Exchange", intent="size_exchange", goal="Boots in 9.5"))
    blind = world.judge_fn

    def judge(messages, sampling):
        text = messages[0]["content"]
        if "FINAL-SALE" in text and world.GOOD_PHRASE in text.split("CONVERSATION")[-1]:
            if sampling.json_schema:
                n = json.loads(sampling.json_schema)["properties"]["passed"]["minItems"]
                return json.dumps(
                    {"passed": [False] * n, "weakest_turn": 1, "critique": "credit on final sale"}
                )
            return "1"
        return blind(messages, sampling)

    monkeypatch.setattr(world, "judge_fn", judge)
    await Grower(store, domain, world.models(world.HELPFUL), _config(regression=2)).run()
    [cand] = store.list_candidates()
    e = GateEvidence.from_stored(cand.evidence)
    assert cand.outcome == "rejected" and "intent final_sale_return" in cand.reason
    assert e.ci_low is not None and e.ci_low > 0  # it did help its own scenario
    assert e.regression_by_intent["final_sale_return"] < -0.05
    assert e.regression_by_intent["size_exchange"] >= 0


# -- best-vs-worst coaching ----------------------------------------------------------------------
async def test_a_wide_spread_coaches_from_the_best_and_the_worst_run(store, domain):
    store.add_scenario(_scenario(domain))

    def student(messages, sampling):
        # The student sometimes finds the good answer by itself (seed-dependent), and always with
        # the candidate in its prompt.
        if (
            "Answer as in the example" in messages[0]["content"]
            or world.GOOD_PHRASE in messages[0]["content"]
        ):
            return f"I can offer {world.GOOD_PHRASE}."
        return f"I can offer {world.GOOD_PHRASE}." if (sampling.seed or 0) % 3 == 0 else "Sorry, no."

    teacher_prompts: list[str] = []

    def teacher(messages, sampling):
        teacher_prompts.append(messages[0]["content"])
        return json.dumps(
            {
                "strategies": [
                    {"trigger": "When a customer wants a late refund", "guidance": "Offer store credit."}
                ]
            }
        )

    m = world.models(world.HELPFUL)
    m.student, m.teacher = FunctionModel(student, name="s"), FunctionModel(teacher, name="t")
    await Grower(store, domain, m, _config(samples=6, weak_threshold=0.99)).run()
    [cand] = store.list_candidates()
    e = GateEvidence.from_stored(cand.evidence)
    assert e.source == "best_vs_worst"
    assert e.best_dialogue_id is not None and e.worst_dialogue_id is not None
    best = store.get_dialogue(e.best_dialogue_id)
    assert world.GOOD_PHRASE in best.student_turns[0].content
    assert cand.example == best.student_turns[0].content  # the example quotes the best run
    assert len(teacher_prompts) == 1 and "THE BETTER CONVERSATION" in teacher_prompts[0]


async def test_the_best_run_itself_is_the_candidate_when_the_teacher_fails(store, domain):
    store.add_scenario(_scenario(domain))

    def student(messages, sampling):
        return f"I can offer {world.GOOD_PHRASE}." if (sampling.seed or 0) % 3 == 0 else "Sorry, no."

    m = world.models(world.HELPFUL)
    m.student = FunctionModel(student, name="s")
    m.teacher = FunctionModel(lambda messages, sampling: "not json", name="t")
    await Grower(store, domain, m, _config(samples=6, weak_threshold=0.99)).run()
    [cand] = store.list_candidates()
    e = GateEvidence.from_stored(cand.evidence)
    assert e.source == "best_run"
    assert cand.trigger.startswith("When a customer wants a cash refund")
    assert world.GOOD_PHRASE in cand.example


async def test_the_teachers_reply_is_the_candidate_when_its_advice_is_unusable(store, domain):
    store.add_scenario(_scenario(domain))

    def teacher(messages, sampling):
        if sampling.json_schema:  # the structured proposal: never valid
            return "not json"
        return f"Past 30 days I can offer {world.GOOD_PHRASE} instead of a card refund."

    m = world.models(world.HELPFUL)
    m.teacher = FunctionModel(teacher, name="t")
    await Grower(store, domain, m, _config()).run()
    [cand] = store.list_candidates()
    e = GateEvidence.from_stored(cand.evidence)
    assert e.source == "teacher_reply"
    assert cand.trigger.startswith("When a customer wants a cash refund")
    assert cand.example == e.reference_reply and world.GOOD_PHRASE in cand.example
    assert cand.outcome == "accepted"  # the student follows the quoted reply, and the gate sees it


async def test_a_narrow_spread_keeps_the_weakest_turn_contrast(store, domain):
    store.add_scenario(_scenario(domain))
    await Grower(store, domain, world.models(world.HELPFUL), _config()).run()
    [cand] = store.list_candidates()
    assert GateEvidence.from_stored(cand.evidence).source == "weakest_turn"


# -- simulator faults ----------------------------------------------------------------------------
FAULTY = {
    "spoke_as_agent": [("customer", "Hi."), ("student", "Hello!"), ("customer", "How can I help you today?")],
    "revealed_hidden_fact": [
        ("customer", "Hi."),
        ("student", "Hello! I can help."),
        ("customer", "The jacket was never worn and still has its tags on."),
    ],
    "invented_fact": [("customer", "Hi."), ("student", "Hello!"), ("customer", "My order is NW-99999.")],
    "ended_early": [
        ("customer", "Hi."),
        ("student", "Could you give me your order number?"),
        ("customer", "Bye."),
    ],
}


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_simulator_fault_is_found(kind, northwind):
    sc = _scenario(northwind, opening="Hi.")
    ended = "stop_marker" if kind == "ended_early" else "max_turns"
    assert find_faults(_dialogue(*FAULTY[kind], ended_by=ended), sc) == [kind]


def test_an_honest_customer_has_no_fault(northwind):
    sc = _scenario(northwind, opening="Hi.")
    honest = _dialogue(
        ("customer", "Hi."),
        ("student", "Was the jacket worn? Are the tags still on?"),
        ("customer", "The jacket was never worn and still has its tags on. Order NW-48213."),
        ("student", "Thanks, I can offer store credit."),
        ended_by="stop_marker",
    )
    assert find_faults(honest, sc) == []


async def test_flagged_dialogues_leave_the_gate_and_are_counted(store, domain):
    store.add_scenario(_scenario(domain))

    def customer(messages, sampling):
        return "How can I help you today?"  # the customer speaks as the agent in every dialogue

    m = world.models(world.HELPFUL, customer=customer)  # type: ignore[arg-type]
    summary = await Grower(store, domain, m, _config()).run()
    [cand] = store.list_candidates()
    e = GateEvidence.from_stored(cand.evidence)
    assert cand.outcome == "rejected" and e.n_pairs == 0 and "too few judged pairs" in cand.reason
    assert e.flagged_pairs == len(e.pairs) > 0
    assert all(p.faults == ["spoke_as_agent"] for p in e.pairs)
    assert summary.flagged_dialogues == summary.dialogues


# -- the judge that always answers ---------------------------------------------------------------
async def test_a_failed_rubric_answer_falls_back_to_checks_and_rating(northwind):
    sc = _scenario(northwind)
    d = _dialogue(("customer", "Refund me."), ("student", "I can offer store credit."))
    model = ScriptedModel(["not json"] * 3 + ["4"])
    j = await Judge(model, northwind).judge(sc, d, seed=1)
    assert j.partial and j.rubric == [] and j.rating == 4.0
    assert j.score == pytest.approx(j.score_on(rubric=False))
    # The answer asked for is compact: one boolean per rubric item, within a limit that fits it.
    verdict_call = model.calls[0]
    schema = json.loads(verdict_call.sampling.json_schema)
    assert schema["properties"]["passed"]["items"]["type"] == "boolean"
    assert "reason" not in json.dumps(schema)


async def test_a_weakest_turn_out_of_range_is_clamped_not_re_asked(northwind):
    sc = _scenario(northwind)
    d = _dialogue(("customer", "Refund me."), ("student", "No."))
    n = len(sc.criteria(northwind).rubric)
    model = ScriptedModel([json.dumps({"passed": [True] * n, "weakest_turn": 7, "critique": "ok"}), "3"])
    j = await Judge(model, northwind).judge(sc, d, seed=1)
    assert j.weakest_turn == 1 and not j.partial and len(model.calls) == 2


def test_the_benchmark_reports_the_measured_judge_failure_rate(tmp_path):
    from benchmarks import bench_gate

    noise = {
        "dialogues": 4,
        "old": {"unjudged": 1, "rate": 0.25},
        "new": {"unjudged": 0, "rate": 0.0, "partial": 1},
        "scores": [{"scenario": "a", "seed": k, "score": 0.5 + 0.01 * k} for k in range(4)],
        "null_pairs": [{"scenario": "a", "seeds": [0, 1], "score_delta": 0.01, "preference": 0.0}],
    }
    path = tmp_path / "noise.json"
    path.write_text(json.dumps(noise), encoding="utf-8")
    loaded = bench_gate.load_noise(path)
    assert loaded["score"].size == 6
    text = bench_gate.render(
        {
            "noise": {
                "score_null_sd": 0.01,
                "score_null_pairs": 6,
                "pairwise_null_sd": 0.0,
                "pairwise_slope": 0.0,
                "pairwise_null_pairs": 1,
                "judge_unjudged_before": 0.25,
                "judge_unjudged_after": 0.0,
                "judge_partial_after": 0.25,
                "dialogues": 4,
            },
            "gates": {},
        }
    )
    assert "judge unjudgeable: before 25%, after 0%" in text
    shipped = json.loads(bench_gate.NOISE.read_text(encoding="utf-8"))
    assert shipped["new"]["rate"] < 0.05  # measured on stored embedded dialogues
