"""Scoring, statistics, the gate rule, text similarity, cell picking and seeds (strategist/core/)."""

from __future__ import annotations

import hashlib
import math
import random

import numpy as np
import pytest

from strategist.core.cells import Cell, CellStats, all_cells, pick_cells
from strategist.core.dialogue import CheckResult, Dialogue, RubricResult, Turn
from strategist.core.domain import Domain, SuccessCriteria, persona_key
from strategist.core.gate import GateConfig, decide
from strategist.core.scoring import expected_rating, overall_score, parse_rating, run_checks
from strategist.core.seeds import derive_seed
from strategist.core.stats import paired_bootstrap
from strategist.core.text import jaccard, most_similar, words


def dialogue(*turns: tuple[str, str]) -> Dialogue:
    return Dialogue(seed=1, turns=[Turn(role=r, content=c) for r, c in turns])  # type: ignore[arg-type]


def criteria(must_say=(), must_not_say=()) -> SuccessCriteria:
    return SuccessCriteria.model_validate({"must_say": list(must_say), "must_not_say": list(must_not_say)})


# --- run_checks -----------------------------------------------------------------------------------


def test_must_say_found_in_any_agent_turn():
    d = dialogue(
        ("customer", "Hi"),
        ("student", "Hello, how can I help?"),
        ("customer", "refund please"),
        ("student", "I can offer Store Credit."),
    )
    [res] = run_checks(d, criteria(must_say=["store credit"]))
    assert res == CheckResult(kind="must_say", check="store credit", passed=True)


def test_must_say_missing_fails():
    d = dialogue(("customer", "Hi"), ("student", "Hello."))
    [res] = run_checks(d, criteria(must_say=["store credit"]))
    assert res.kind == "must_say" and res.passed is False


def test_must_not_say_passes_only_if_absent():
    clean = dialogue(("customer", "Hi"), ("student", "Your refund will take 5-7 days."))
    dirty = dialogue(("customer", "Hi"), ("student", "OK."), ("student", "I guarantee it arrives tomorrow."))
    crit = criteria(must_not_say=["I guarantee"])
    assert [r.passed for r in run_checks(clean, crit)] == [True]
    [res] = run_checks(dirty, crit)
    assert res.kind == "must_not_say" and res.passed is False


def test_customer_turns_are_ignored():
    d = dialogue(("customer", "Give me store credit, I guarantee I'll be back."), ("student", "Sorry, no."))
    results = run_checks(d, criteria(must_say=["store credit"], must_not_say=["I guarantee"]))
    assert [(r.kind, r.passed) for r in results] == [("must_say", False), ("must_not_say", True)]


def test_run_checks_order_and_regex_label():
    d = dialogue(("student", "Order NW-12345 found."))
    crit = SuccessCriteria.model_validate(
        {
            "must_say": [{"regex": r"NW-\d{5}"}, "found"],
            "must_not_say": [{"regex": "VIP\\d", "description": "code"}],
        }
    )
    results = run_checks(d, crit)
    assert [(r.kind, r.check, r.passed) for r in results] == [
        ("must_say", "/NW-\\d{5}/", True),
        ("must_say", "found", True),
        ("must_not_say", "code", True),
    ]


def test_run_checks_without_student_turns():
    d = dialogue(("customer", "hello"))
    results = run_checks(d, criteria(must_say=["x"], must_not_say=["y"]))
    assert [r.passed for r in results] == [False, True]


# --- ratings -----------------------------------------------------------------------------------------


def test_expected_rating_by_hand():
    top = {"4": math.log(0.6), "5": math.log(0.2), " 3": math.log(0.2), "A": math.log(0.5)}
    expected = (4 * 0.6 + 5 * 0.2 + 3 * 0.2) / (0.6 + 0.2 + 0.2)
    assert expected_rating(top) == pytest.approx(expected)
    assert expected_rating(top) == pytest.approx(4.0)


def test_expected_rating_renormalises_over_rating_tokens():
    top = {"2": math.log(0.1), "4": math.log(0.3), "hello": math.log(0.6)}
    assert expected_rating(top) == pytest.approx((2 * 0.1 + 4 * 0.3) / 0.4)


def test_expected_rating_merges_tokens_with_same_digit():
    top = {"5": math.log(0.25), " 5": math.log(0.25), "1": math.log(0.5)}
    assert expected_rating(top) == pytest.approx((5 * 0.5 + 1 * 0.5) / 1.0)


@pytest.mark.parametrize("top", [{}, {"A": -0.1, "six": -1.0}, {"0": -0.1, "6": -0.2, "45": -0.3}])
def test_expected_rating_none_without_rating_token(top):
    assert expected_rating(top) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", 4),
        ("Rating: 5", 5),
        ("I'd say 3 out of 5", 3),
        ("Score 4/5", 4),
        ("10 out of 10", None),
        ("rating 0 or 6", None),
        ("no digits", None),
        ("", None),
        ("7, then 2", 2),
    ],
)
def test_parse_rating(text, expected):
    assert parse_rating(text) == expected


def _checks(*passed: bool) -> list[CheckResult]:
    return [CheckResult(kind="must_say", check=f"c{i}", passed=p) for i, p in enumerate(passed)]


def _rubric(*passed: bool) -> list[RubricResult]:
    return [RubricResult(item=f"r{i}", passed=p) for i, p in enumerate(passed)]


def test_overall_score_all_parts():
    # checks 2/3, rubric 1/4, rating 4 -> (4-1)/4 = 0.75
    score = overall_score(_checks(True, True, False), _rubric(True, False, False, False), 4.0)
    assert score == pytest.approx((2 / 3 + 1 / 4 + 0.75) / 3)


def test_overall_score_only_present_parts():
    assert overall_score([], _rubric(True, False), None) == pytest.approx(0.5)
    assert overall_score(_checks(True), [], None) == pytest.approx(1.0)
    assert overall_score([], [], 1.0) == pytest.approx(0.0)
    assert overall_score([], [], 5.0) == pytest.approx(1.0)
    assert overall_score(_checks(False), [], 3.0) == pytest.approx((0 + 0.5) / 2)
    assert overall_score([], [], None) == 0.0


# --- paired_bootstrap ----------------------------------------------------------------------------------


def test_bootstrap_mean_and_interval():
    deltas = [0.1, -0.05, 0.3, 0.2, 0.0, 0.15, 0.25]
    r = paired_bootstrap(deltas, seed=3)
    assert r.mean == pytest.approx(float(np.mean(deltas)))
    assert r.ci_low <= r.mean <= r.ci_high
    assert r.ci_low < r.ci_high
    assert min(deltas) <= r.ci_low and r.ci_high <= max(deltas)
    assert r.n == len(deltas)
    assert r.deltas == tuple(deltas)
    assert r.confidence == 0.95


def test_bootstrap_is_deterministic_for_a_seed():
    deltas = [0.1, -0.05, 0.3, 0.2, 0.0, 0.15, 0.25]
    a = paired_bootstrap(deltas, seed=7)
    b = paired_bootstrap(deltas, seed=7)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)


def test_bootstrap_wider_interval_for_higher_confidence():
    deltas = [0.1, -0.05, 0.3, 0.2, 0.0, 0.15, 0.25, -0.1, 0.4]
    narrow = paired_bootstrap(deltas, confidence=0.5, seed=1)
    wide = paired_bootstrap(deltas, confidence=0.99, seed=1)
    assert wide.ci_low <= narrow.ci_low and narrow.ci_high <= wide.ci_high
    assert (wide.ci_high - wide.ci_low) > (narrow.ci_high - narrow.ci_low)


@pytest.mark.parametrize("deltas", [[0.2, 0.2, 0.2, 0.2], [0.35], [0.0, 0.0]])
def test_bootstrap_collapses_without_spread(deltas):
    r = paired_bootstrap(deltas)
    assert r.mean == pytest.approx(deltas[0])
    assert r.ci_low == r.mean == r.ci_high


def test_bootstrap_raises_on_empty():
    with pytest.raises(ValueError):
        paired_bootstrap([])


# --- gate.decide --------------------------------------------------------------------------------------

CLEAR = [0.2, 0.25, 0.3, 0.22, 0.28, 0.26]


def test_decide_accepts_clearly_positive():
    d = decide(CLEAR, [], GateConfig())
    assert d.accepted is True
    assert d.reason.startswith("helps")
    assert d.paired is not None and d.paired.ci_low > 0
    assert d.regression_mean is None


def test_decide_rejects_all_zero():
    d = decide([0.0] * 6, [0.0], GateConfig())
    assert d.accepted is False
    assert "no clear improvement" in d.reason


def test_decide_rejects_negative():
    d = decide([-0.2, -0.1, -0.3, -0.25], [], GateConfig())
    assert d.accepted is False
    assert d.paired is not None and d.paired.mean < 0


def test_decide_rejects_positive_but_noisy():
    noisy = [0.9, -0.8, 0.7, -0.6, 0.5, -0.4]
    assert np.mean(noisy) > 0
    d = decide(noisy, [], GateConfig())
    assert d.accepted is False
    assert d.paired is not None and d.paired.ci_low < 0 < d.paired.ci_high
    assert "no clear improvement" in d.reason


def test_decide_rejects_regression_even_if_target_helps():
    d = decide(CLEAR, [-0.2, -0.1], GateConfig())
    assert d.accepted is False
    assert "hurts other scenarios" in d.reason
    assert d.regression_mean == pytest.approx(-0.15)


def test_decide_tolerates_small_regression():
    d = decide(CLEAR, [-0.04, -0.02], GateConfig(regression_tolerance=0.05))
    assert d.accepted is True
    assert d.regression_mean == pytest.approx(-0.03)
    strict = decide(CLEAR, [-0.04, -0.02], GateConfig(regression_tolerance=0.01))
    assert strict.accepted is False


def test_decide_respects_custom_threshold():
    low = paired_bootstrap(CLEAR).ci_low
    assert decide(CLEAR, [], GateConfig(threshold=low - 0.05)).accepted is True
    rejected = decide(CLEAR, [], GateConfig(threshold=low + 0.01))
    assert rejected.accepted is False
    assert "lower bound not above" in rejected.reason


def test_decide_without_pairs():
    d = decide([], [0.5], GateConfig())
    assert (d.accepted, d.paired, d.regression_mean) == (False, None, None)
    assert d.reason == "too few judged pairs (0 < 3)"


@pytest.mark.parametrize("deltas", [[0.05], [0.083, 0.083], [0.3, 0.4]])
def test_decide_needs_a_minimum_of_pairs(deltas):
    # One or two pairs give a degenerate bootstrap interval: however positive, they are no evidence.
    d = decide(deltas, [], GateConfig())
    assert not d.accepted and d.reason.startswith("too few judged pairs")
    assert decide(deltas * 3, [], GateConfig(min_pairs=3)).accepted


def test_min_pairs_is_configurable():
    assert decide([0.2, 0.3], [], GateConfig(min_pairs=2)).accepted


# --- text ------------------------------------------------------------------------------------------


def test_words_drop_stopwords_and_case():
    assert words("The Jacket is MY jacket, order NW-123!") == frozenset({"jacket", "order", "nw", "123"})


def test_jaccard_properties():
    a, b = "refund for a late jacket", "late jacket exchange"
    assert jaccard(a, a) == 1.0
    assert jaccard(a, b) == jaccard(b, a)
    # {refund, late, jacket} vs {late, jacket, exchange}: 2 shared of 4
    assert jaccard(a, b) == pytest.approx(2 / 4)
    assert jaccard("tent poles", "store credit") == 0.0
    assert jaccard("", "") == 1.0
    assert jaccard("the a of", "") == 1.0  # only stopwords: both empty
    assert jaccard("jacket", "") == 0.0
    assert jaccard("Jacket REFUND", "refund jacket") == 1.0


def test_most_similar():
    others = [(1, "tent delivery date"), (2, "late jacket refund"), (3, "jacket refund store credit")]
    best_id, sim = most_similar("refund for a late jacket", others)
    assert best_id == 2
    assert sim == pytest.approx(1.0)
    assert most_similar("anything", []) == (None, 0.0)
    assert most_similar("boots", [(5, "tent poles")]) == (None, 0.0)


# --- cells ------------------------------------------------------------------------------------------


def small_domain(intents=("a", "b", "c"), moods=("calm", "angry"), loyalty=("new", "old")) -> Domain:
    return Domain.model_validate(
        {
            "id": "d",
            "name": "D",
            "company": "C",
            "agent_role": "agent",
            "policy": "policy",
            "persona_dimensions": {"mood": list(moods), "loyalty": list(loyalty)},
            "intents": [{"id": i, "description": f"intent {i}"} for i in intents],
        }
    )


def test_all_cells_is_the_cross_product():
    d = small_domain()
    cells = all_cells(d)
    assert len(cells) == 3 * 2 * 2
    assert len({c.key for c in cells}) == len(cells)
    assert Cell({"loyalty": "old", "mood": "angry"}, "b").key in {c.key for c in cells}


def test_pick_cells_prefers_cells_without_scenarios():
    d = small_domain(intents=("a",))
    seen = {
        (persona_key({"mood": "calm", "loyalty": "new"}), "a"): CellStats(2, 0.1),
        (persona_key({"mood": "angry", "loyalty": "new"}), "a"): CellStats(1, 0.2),
    }
    picked = pick_cells(d, seen, 2, random.Random(0))
    assert {persona_key(c.persona) for c in picked} == {"loyalty=old, mood=calm", "loyalty=old, mood=angry"}
    # then the thinner of the covered cells
    picked3 = pick_cells(d, seen, 3, random.Random(0))
    assert picked3[2].key == (persona_key({"mood": "angry", "loyalty": "new"}), "a")


def test_pick_cells_prefers_empty_cells_over_spreading_intents():
    d = small_domain(intents=("a", "b"), loyalty=("new",))
    # every cell of intent b already has a scenario; intent a has two empty cells
    seen = {(persona_key({"mood": m, "loyalty": "new"}), "b"): CellStats(1, 0.9) for m in ("calm", "angry")}
    picked = pick_cells(d, seen, 2, random.Random(0))
    assert [c.intent for c in picked] == ["a", "a"]


def test_pick_cells_spreads_intents():
    d = small_domain()
    for seed in range(5):
        picked = pick_cells(d, {}, 3, random.Random(seed))
        assert sorted(c.intent for c in picked) == ["a", "b", "c"]
        picked5 = pick_cells(d, {}, 5, random.Random(seed))
        assert {c.intent for c in picked5[:3]} == {"a", "b", "c"}
        assert len({c.key for c in picked5}) == 5


def test_pick_cells_is_deterministic_for_a_seeded_random():
    d = small_domain()
    runs = [[c.key for c in pick_cells(d, {}, 6, random.Random(42))] for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    # the seed does matter: some seed gives another order
    others = {tuple(c.key for c in pick_cells(d, {}, 6, random.Random(s))) for s in range(10)}
    assert len(others) > 1


def test_pick_cells_weakest_first_among_equally_covered():
    d = small_domain(intents=("a", "b"), loyalty=("new",))
    scores = {("calm", "a"): 0.9, ("angry", "a"): 0.2, ("calm", "b"): 0.4, ("angry", "b"): 0.6}
    seen = {(persona_key({"mood": m, "loyalty": "new"}), i): CellStats(1, s) for (m, i), s in scores.items()}
    for seed in range(5):
        [one] = pick_cells(d, seen, 1, random.Random(seed))
        assert one.key == ("loyalty=new, mood=angry", "a")
        two = pick_cells(d, seen, 2, random.Random(seed))
        assert [c.key for c in two] == [("loyalty=new, mood=angry", "a"), ("loyalty=new, mood=calm", "b")]
        four = pick_cells(d, seen, 4, random.Random(seed))
        assert [c.key[1] for c in four] == ["a", "b", "b", "a"]


def test_pick_cells_never_more_than_exist():
    d = small_domain(intents=("a",), moods=("calm",), loyalty=("new", "old"))
    picked = pick_cells(d, {}, 10, random.Random(0))
    assert len(picked) == 2
    assert {c.key for c in picked} == {c.key for c in all_cells(d)}
    assert pick_cells(d, {}, 0, random.Random(0)) == []


# --- seeds ------------------------------------------------------------------------------------------


def test_derive_seed_is_stable():
    expected = int.from_bytes(hashlib.sha256(b"run-1|7|0").digest()[:4], "big") & 0x7FFFFFFF
    assert derive_seed("run-1", 7, 0) == expected
    assert derive_seed("run-1", 7, 0) == derive_seed("run-1", 7, 0)


def test_derive_seed_distinct_and_in_range():
    seeds = {derive_seed(1, scenario, sample) for scenario in range(20) for sample in range(5)}
    assert len(seeds) == 100
    assert all(0 <= s < 2**31 for s in seeds)
    assert derive_seed(1, 2) != derive_seed(2, 1)
    assert derive_seed(12, 3) != derive_seed(1, 23)
