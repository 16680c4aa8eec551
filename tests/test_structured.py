"""Structured output with re-asks (strategist/structured.py), driven by ScriptedModel."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from strategist.errors import ModelError, StructuredOutputError
from strategist.models import Completion, Sampling, ScriptedModel
from strategist.structured import complete_structured, extract_json, parse_output, schema_text


class Answer(BaseModel):
    a: int
    b: str = ""


class Bounded(BaseModel):
    short: str = Field(max_length=10)
    edge: str = Field(max_length=600)
    long: str = Field(max_length=601)
    huge: list[str] = Field(default_factory=list, max_length=2000)
    items: list[str] = Field(default_factory=list)


USER = [{"role": "user", "content": "Give me the answer."}]


async def test_valid_json_first_time():
    model = ScriptedModel(['{"a": 1, "b": "x"}'])
    out, completions = await complete_structured(model, USER, Answer)
    assert out == Answer(a=1, b="x")
    assert len(completions) == 1
    assert completions[0].text == '{"a": 1, "b": "x"}'
    assert len(model.calls) == 1
    assert model.pending == 0


async def test_schema_is_appended_to_last_user_message_without_mutating_input():
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Give me the answer."}]
    model = ScriptedModel(['{"a": 1}'])
    await complete_structured(model, messages, Answer)
    sent = model.calls[0].messages
    assert sent[0] == {"role": "system", "content": "sys"}
    assert sent[-1]["content"].startswith("Give me the answer.")
    assert schema_text(Answer) in sent[-1]["content"]
    assert "JSON" in sent[-1]["content"]
    assert messages[-1]["content"] == "Give me the answer."


async def test_json_inside_a_fence():
    reply = 'Sure! Here it is:\n```json\n{"a": 2, "b": "fenced"}\n```\nAnything else?'
    model = ScriptedModel([reply])
    out, completions = await complete_structured(model, USER, Answer)
    assert out == Answer(a=2, b="fenced")
    assert len(completions) == 1


async def test_json_with_surrounding_prose():
    model = ScriptedModel(['The answer is {"a": 3} as requested.'])
    out, _ = await complete_structured(model, USER, Answer)
    assert out.a == 3


async def test_invalid_then_valid_reasks_with_the_error():
    bad = '{"a": "not a number"}'
    model = ScriptedModel([bad, '{"a": 5}'])
    out, completions = await complete_structured(model, USER, Answer)
    assert out == Answer(a=5)
    assert len(completions) == 2
    assert len(model.calls) == 2
    second = model.calls[1].messages
    # the first call's conversation, then the bad answer, then the re-ask
    assert second[: len(model.calls[0].messages)] == model.calls[0].messages
    assert second[-2] == {"role": "assistant", "content": bad}
    assert second[-1]["role"] == "user"
    reask = second[-1]["content"]
    assert "could not be used" in reask
    # the validation error names the field and pydantic's message
    assert "a: Input should be a valid integer" in reask


async def test_not_json_then_valid_reasks_with_parse_error():
    model = ScriptedModel(["I cannot answer in JSON, sorry.", '{"a": 1}'])
    out, completions = await complete_structured(model, USER, Answer)
    assert out.a == 1
    assert len(completions) == 2
    assert "no JSON object found" in model.calls[1].messages[-1]["content"]


async def test_always_invalid_raises_after_all_attempts():
    replies = ["nope", '{"b": "missing a"}', '{"a": "still wrong"}']
    model = ScriptedModel(replies)
    with pytest.raises(StructuredOutputError) as info:
        await complete_structured(model, USER, Answer)
    err = info.value
    assert err.attempts == 3
    assert err.last_output == '{"a": "still wrong"}'
    assert "valid integer" in err.last_error
    assert err.tokens > 0
    assert err.model == "scripted"
    assert isinstance(err, ModelError)
    assert len(model.calls) == 3
    assert "3 attempts" in str(err)


async def test_attempts_parameter_is_respected():
    model = ScriptedModel(default="never json")
    with pytest.raises(StructuredOutputError) as info:
        await complete_structured(model, USER, Answer, attempts=2)
    assert info.value.attempts == 2
    assert len(model.calls) == 2


async def test_tokens_are_summed_over_attempts():
    replies = [Completion(text="bad", model="m", prompt_tokens=10, completion_tokens=2) for _ in range(3)]
    model = ScriptedModel(replies)
    with pytest.raises(StructuredOutputError) as info:
        await complete_structured(model, USER, Answer)
    assert info.value.tokens == 3 * 12


async def test_truncated_reply_is_repaired():
    model = ScriptedModel(['{"a": 1, "b": "some te'])
    out, completions = await complete_structured(model, USER, Answer)
    assert out == Answer(a=1, b="some te")
    assert len(completions) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1, "b": "some te', Answer(a=1, b="some te")),
        ('```json\n{"a": 4, "b": "cut off', Answer(a=4, b="cut off")),
        ('{"a": 1, "b": "ends in escape \\', Answer(a=1, b="ends in escape ")),
        ('{"a": 7', Answer(a=7)),
    ],
)
def test_parse_output_repairs_truncation(text, expected):
    assert parse_output(text, Answer) == expected


def test_parse_output_unrepairable_raises():
    with pytest.raises(ValueError):
        parse_output("no json here", Answer)


def test_extract_json():
    assert extract_json('x {"a": {"b": 1}} y') == '{"a": {"b": 1}}'
    assert extract_json('```\n{"a": 1}\n```') == '{"a": 1}'
    with pytest.raises(ValueError):
        extract_json("}{")


async def test_schema_is_passed_in_sampling_and_long_bounds_stripped():
    model = ScriptedModel(['{"short": "s", "edge": "e", "long": "l"}'])
    base = Sampling(temperature=0.1, max_tokens=99, seed=5)
    out, _ = await complete_structured(model, USER, Bounded, sampling=base)
    assert out.short == "s"
    s = model.calls[0].sampling
    assert s.json_schema == schema_text(Bounded)
    assert (s.temperature, s.max_tokens, s.seed) == (0.1, 99, 5)
    props = json.loads(s.json_schema)["properties"]
    assert props["short"]["maxLength"] == 10
    assert props["edge"]["maxLength"] == 600
    assert "maxLength" not in props["long"]
    assert props["huge"]["maxItems"] == 2000  # only string lengths are stripped
    # the schema text in the prompt is the same stripped schema
    assert s.json_schema in model.calls[0].last


async def test_long_maxlength_is_still_validated():
    too_long = json.dumps({"short": "s", "edge": "e", "long": "x" * 700})
    model = ScriptedModel([too_long, '{"short": "s", "edge": "e", "long": "ok"}'])
    out, completions = await complete_structured(model, USER, Bounded)
    assert out.long == "ok"
    assert len(completions) == 2
    assert "long" in model.calls[1].last


async def test_each_reask_changes_the_seed():
    model = ScriptedModel(default="not json")
    with pytest.raises(StructuredOutputError):
        await complete_structured(model, USER, Answer, sampling=Sampling(seed=100), attempts=4)
    seeds = [c.sampling.seed for c in model.calls]
    assert seeds[0] == 100
    assert len(set(seeds)) == 4
    assert all(s is not None for s in seeds)


async def test_reask_without_seed_stays_unseeded():
    model = ScriptedModel(default="not json")
    with pytest.raises(StructuredOutputError):
        await complete_structured(model, USER, Answer, sampling=Sampling(seed=None))
    assert [c.sampling.seed for c in model.calls] == [None, None, None]


async def test_model_errors_propagate():
    model = ScriptedModel([ModelError("scripted", "boom")])
    with pytest.raises(ModelError, match="boom") as info:
        await complete_structured(model, USER, Answer)
    assert not isinstance(info.value, StructuredOutputError)


async def test_text_copied_from_the_schema_is_re_asked():
    # What SmolLM2 wrote as a teacher: the schema's $ref and a field's description as the values.
    from strategist.roles.teacher import Proposals

    echo = json.dumps({"strategies": [{"trigger": "#/$defs/Proposal", "guidance": "What to do or avoid"}]})
    described = json.dumps(
        {"strategies": [{"trigger": "When a refund is late", "guidance": "What to do or avoid."}]}
    )
    good = json.dumps(
        {"strategies": [{"trigger": "When a refund is late", "guidance": "Offer store credit instead."}]}
    )
    model = ScriptedModel([echo, described, good])
    out, completions = await complete_structured(model, USER, Proposals)
    assert out.strategies[0].guidance == "Offer store credit instead." and len(completions) == 3
    # A bare reference is not a sentence either: whichever check names it, it is re-asked.
    assert "reference from the JSON schema" in model.calls[1].last or "three words" in model.calls[1].last
    assert "description repeated" in model.calls[2].last


async def test_the_output_model_docstring_copied_into_a_field_is_re_asked():
    # What SmolLM2 wrote as a harvesting teacher: the draft's docstring (the schema's description)
    # as the scenario's title.
    from strategist.roles.teacher import HarvestDraft

    fields = {"goal": "A card refund 45 days after delivery.", "rubric": ["Offers store credit"]}
    echo = json.dumps({"title": "What the teacher reads from a conversation for a harvested", **fields})
    good = json.dumps({"title": "Late jacket refund", **fields})
    model = ScriptedModel([echo, good])
    out, _ = await complete_structured(model, USER, HarvestDraft)
    assert out.title == "Late jacket refund" and "schema's description repeated" in model.calls[1].last


def test_the_schema_sent_has_no_references_to_copy():
    from strategist.roles.teacher import Proposals

    sent = json.loads(schema_text(Proposals))
    assert "$ref" not in json.dumps(sent) and "$defs" not in sent
    item = sent["properties"]["strategies"]["items"]
    assert item["required"] == ["trigger", "guidance"] and item["properties"]["trigger"]["type"] == "string"


def test_a_strategy_that_is_not_a_sentence_is_re_asked():
    # What SmolLM2 wrote as a coaching teacher: schema paths and numbered names as triggers.
    from pydantic import ValidationError

    from strategist.roles.teacher import ContrastProposal, Proposal

    for bad in ("Trigger_1.1.1.1.0", "items.items.description"):
        with pytest.raises(ValidationError, match="at least three words"):
            Proposal(trigger=bad, guidance="Offer store credit for the return.")
        with pytest.raises(ValidationError, match="at least three words"):
            ContrastProposal(trigger="When a refund is late", guidance=bad)
    assert Proposal(trigger="When a refund is late", guidance="Offer store credit.").guidance
