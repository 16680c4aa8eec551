"""The embedded model (SmolLM2-135M run in-process by llama-cpp-python), for real.

Every test here loads the actual GGUF file; max_tokens stay small to keep the module fast.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from strategist.core.dialogue import Dialogue, Judgement, Turn
from strategist.errors import ModelUnavailableError, StructuredOutputError
from strategist.models import resolve_model
from strategist.models.base import Sampling, TokenLogprobs
from strategist.models.embedded import SMOLLM2_FILE, EmbeddedModel, smollm2_path
from strategist.packs import load_domain, load_scenario_set
from strategist.roles import Judge

pytestmark = pytest.mark.embedded

NORTHWIND = Path(__file__).resolve().parent.parent / "scenarios" / "northwind"
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


@pytest.fixture(scope="module")
def model():
    try:
        smollm2_path()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    m = EmbeddedModel()
    yield m
    asyncio.run(m.aclose())


async def test_plain_completion_returns_text_and_token_counts(model):
    c = await model.complete(HELLO, Sampling(temperature=0.0, max_tokens=16))
    assert c.text.strip()
    assert c.model == "embedded/smollm2"
    assert c.prompt_tokens > 0
    assert 0 < c.completion_tokens <= 16
    assert c.total_tokens == c.prompt_tokens + c.completion_tokens
    assert c.logprobs is None  # not asked for
    assert c.latency_ms > 0


async def test_json_schema_constrains_the_output(model):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    c = await model.complete(
        [{"role": "user", "content": "Describe a person as JSON with a name and an age."}],
        Sampling(temperature=0.0, max_tokens=40, json_schema=json.dumps(schema)),
    )
    data = json.loads(c.text)
    assert isinstance(data, dict)
    assert {"name", "age"} <= data.keys()
    assert isinstance(data["name"], str)
    assert isinstance(data["age"], int)


async def test_top_logprobs_per_token(model):
    c = await model.complete(HELLO, Sampling(temperature=0.0, max_tokens=8, top_logprobs=5))
    assert c.logprobs, "asked for top_logprobs=5 but got none"
    for tok in c.logprobs:
        assert isinstance(tok, TokenLogprobs)
        assert isinstance(tok.token, str)
        assert type(tok.logprob) is float  # not a numpy float
        assert len(tok.top) == 5
        assert all(type(v) is float for v in tok.top.values())
        assert tok.logprob <= 0.0
        assert all(v <= 0.0 for v in tok.top.values())
        assert sum(math.exp(v) for v in tok.top.values()) <= 1.0 + 1e-6
        # Greedy decoding: the chosen token is the most likely one.
        assert tok.logprob == pytest.approx(max(tok.top.values()))
        assert tok.token in tok.top


async def test_same_seed_same_text_with_or_without_logprobs(model):
    s = Sampling(temperature=0.8, max_tokens=20, seed=7)
    a = await model.complete(HELLO, s)
    b = await model.complete(HELLO, s)
    with_lp = await model.complete(HELLO, Sampling(temperature=0.8, max_tokens=20, seed=7, top_logprobs=5))
    assert a.text
    assert a.text == b.text
    # Capturing the logits for log-probabilities must not change what is sampled.
    assert with_lp.text == a.text
    assert with_lp.completion_tokens == a.completion_tokens
    assert with_lp.logprobs


async def test_logprob_tokens_spell_the_sampled_text(model):
    # Regression: the last token used to be read from llama._input_ids, which lacks a token
    # sampled at max_tokens (never evaluated), so the argmax was reported instead.
    msgs = [{"role": "user", "content": "Tell me about the sea."}]
    mismatches = []
    for seed in range(6):
        c = await model.complete(msgs, Sampling(temperature=1.5, max_tokens=6, seed=seed, top_logprobs=5))
        assert c.completion_tokens == 6
        spelled = "".join(t.token for t in c.logprobs or [])
        if spelled != c.text:
            mismatches.append((seed, c.text, spelled))
    assert not mismatches


async def test_one_logprob_entry_per_generated_token(model):
    # Regression: a reply that ends at the end-of-sequence token used to get an extra '' entry.
    ended = []
    for seed in range(6):
        c = await model.complete(
            [{"role": "user", "content": "Say yes."}],
            Sampling(temperature=1.5, max_tokens=30, seed=seed, top_logprobs=3),
        )
        if c.completion_tokens < 30:  # ended on its own, at the end-of-sequence token
            ended.append(c)
    assert ended, "this test needs replies that end on their own"
    assert [len(c.logprobs or []) for c in ended] == [c.completion_tokens for c in ended]


def test_smollm2_path_finds_the_shipped_file(monkeypatch):
    monkeypatch.delenv("STRATEGIST_EMBEDDED_MODEL_PATH", raising=False)
    p = smollm2_path()
    assert p.is_file()
    assert p.name == SMOLLM2_FILE
    assert p.stat().st_size > 1_000_000


def test_smollm2_path_override_to_missing_file_is_unavailable(monkeypatch, tmp_path):
    missing = tmp_path / "nope.gguf"
    monkeypatch.setenv("STRATEGIST_EMBEDDED_MODEL_PATH", str(missing))
    with pytest.raises(ModelUnavailableError, match=r"nope\.gguf"):
        smollm2_path()
    # The model object resolves its path lazily and fails the same way on first use.
    with pytest.raises(ModelUnavailableError):
        asyncio.run(EmbeddedModel().complete(HELLO, Sampling(max_tokens=2)))


def test_smollm2_path_override_to_existing_file(monkeypatch):
    real = smollm2_path()
    monkeypatch.setenv("STRATEGIST_EMBEDDED_MODEL_PATH", str(real))
    assert smollm2_path() == real


def test_resolve_model_embedded():
    m = resolve_model("embedded/smollm2")
    assert isinstance(m, EmbeddedModel)
    assert m.name == "embedded/smollm2"
    with pytest.raises(ModelUnavailableError):
        resolve_model("embedded/no-such-model")


async def test_judge_with_embedded_model_rates_by_logprobs(model):
    domain = load_domain(NORTHWIND / "domain.yaml")
    _, scenarios = load_scenario_set(NORTHWIND / "scenarios.yaml", domain)
    scenario = next(s for s in scenarios if s.intent == "size_exchange")
    dialogue = Dialogue(
        seed=1,
        turns=[
            Turn(role="customer", content=scenario.opening),
            Turn(
                role="student",
                content="Happy to help with a size exchange! Could you share your order number "
                "and the email on the order?",
            ),
        ],
    )
    judge = Judge(model, domain)
    errors: list[StructuredOutputError] = []
    judgement = None
    for seed in (1, 2, 3):
        try:
            judgement = await judge.judge(scenario, dialogue, seed=seed)
            break
        except StructuredOutputError as exc:  # a tiny model may fail its structured output
            errors.append(exc)
    assert judgement is not None, f"the judge failed with every seed: {errors}"
    assert isinstance(judgement, Judgement)
    assert judgement.judge_model == "embedded/smollm2"
    assert judgement.rating_method == "logprobs"
    assert judgement.rating is not None
    assert 1.0 <= judgement.rating <= 5.0
    assert 0.0 <= judgement.score <= 1.0
    assert len(judgement.rubric) == len(scenario.criteria(domain).rubric)
    assert judgement.weakest_turn == 1


async def test_pairwise_judge_on_the_embedded_model_answers_both_orders(model):
    from strategist.core.dialogue import Dialogue, Turn
    from strategist.core.evidence import pair_preference
    from strategist.packs import load_domain, load_scenario_set
    from strategist.roles import Judge

    domain = load_domain(NORTHWIND / "domain.yaml")
    _, scenarios = load_scenario_set(NORTHWIND / "scenarios.yaml", domain)
    sc = scenarios[0]

    def dialogue(reply: str) -> Dialogue:
        return Dialogue(
            seed=3, turns=[Turn(role="customer", content=sc.opening), Turn(role="student", content=reply)]
        )

    good = dialogue(
        "I'm sorry. It was delivered 45 days ago, so I can offer store credit, not a card refund."
    )
    bad = dialogue("Sure, I'll refund your card right away, no questions asked.")
    votes = await Judge(model, domain).compare(sc, bad, good, seed=3)
    assert [v.order for v in votes] == ["with_first", "without_first"]
    assert all(v.method == "logprobs" for v in votes)
    for v in votes:
        assert v.p_with is not None and v.p_without is not None and v.p_tie is not None
        assert v.p_with + v.p_without + v.p_tie == pytest.approx(1.0)
    preference = pair_preference(votes)
    assert preference is not None and -1.0 <= preference <= 1.0
