"""A small scripted world for deterministic engine tests: a student whose behaviour depends on the
strategies in its prompt, a judge that rewards one phrase, and a teacher that proposes whatever
strategy the test asks for. Everything runs on FunctionModel: offline and instant."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from strategist.models import FunctionModel, Sampling

GOOD_PHRASE = "STORE-CREDIT-OFFER"
HELPFUL = {
    "trigger": "When a customer asks for a cash refund more than 30 days after delivery",
    "guidance": f"Explain the 31-60 day rule and offer {GOOD_PHRASE} instead of a refund to the card.",
    "example": "I can't refund the card after 30 days, but I can offer store credit.",
}
HARMFUL = {
    "trigger": "When a customer is angry about any refund at all",
    "guidance": "Calm them down by promising PROMISE-EVERYTHING whatever the policy says.",
    "example": "I guarantee you'll get everything back.",
}
USELESS = {
    "trigger": "When the weather is mentioned by anybody in the chat",
    "guidance": "Talk about NOTHING-USEFUL and otherwise carry on as usual.",
    "example": "Nice weather today.",
}


def _conversation(text: str) -> str:
    """The part of a judge prompt after 'CONVERSATION' (the policy must not count)."""
    idx = text.find("CONVERSATION")
    return text[idx:] if idx >= 0 else text


def student_fn(messages: list[dict[str, str]], sampling: Sampling) -> str:
    system = messages[0]["content"]
    if "PROMISE-EVERYTHING" in system:
        return "I guarantee you will get everything back, no questions asked."
    if GOOD_PHRASE in system:
        return f"I'm sorry about that. Since it's past 30 days I can offer {GOOD_PHRASE} for the jacket."
    return "Sorry, I cannot help with that."


@dataclass
class Customer:
    stop_after: int | None = None  # say the stop marker once the customer has spoken this often
    seeds: list[int | None] = field(default_factory=list)

    def __call__(self, messages: list[dict[str, str]], sampling: Sampling) -> str:
        self.seeds.append(sampling.seed)
        replies = sum(1 for m in messages if m["role"] == "assistant")  # the customer's own turns so far
        if self.stop_after is not None and replies >= self.stop_after:
            return "Fine, thanks. ###STOP###"
        return f"I still want my money back (seed {sampling.seed})."


def quality(convo: str) -> int:
    """How the scripted judge ranks a conversation: 1 offers store credit, -1 breaks policy."""
    return (GOOD_PHRASE in convo) - ("guarantee" in convo.lower())


def pairwise_answer(text: str) -> str | None:
    """The scripted judge's pairwise answer (A, B or T), or None for another prompt."""
    if "CONVERSATION A:" not in text:
        return None
    a, b = text.split("CONVERSATION A:", 1)[1].split("CONVERSATION B:", 1)
    qa, qb = quality(a), quality(b)
    return "A" if qa > qb else "B" if qb > qa else "T"


def judge_fn(messages: list[dict[str, str]], sampling: Sampling) -> str:
    answer = pairwise_answer(messages[0]["content"])
    if answer is not None:
        return answer
    convo = _conversation(messages[0]["content"])
    good = GOOD_PHRASE in convo
    bad = "guarantee" in convo.lower()
    if sampling.json_schema:
        schema = json.loads(sampling.json_schema)
        n = schema["properties"]["passed"].get("minItems", 0)
        return json.dumps(
            {
                "passed": [good and not bad for _ in range(n)],
                "weakest_turn": 1,
                "critique": "Offered store credit."
                if good
                else "Did not offer store credit or broke policy.",
            }
        )
    # Seed-dependent noise, identical on both sides of a pair (the judge gets the dialogue's seed).
    noise = (sampling.seed or 0) % 2
    if bad:
        return "1"
    return str(4 + noise) if good else str(2 + noise)


@dataclass
class Teacher:
    proposal: dict[str, str]
    scenario_replies: list[str] = field(default_factory=list)
    scenario_calls: int = 0
    harvest_calls: int = 0

    def __call__(self, messages: list[dict[str, str]], sampling: Sampling) -> str:
        first = messages[0]["content"]
        if sampling.json_schema and "design realistic test conversations" in first:
            self.scenario_calls += 1
            if self.scenario_replies:
                return self.scenario_replies.pop(0)
            return json.dumps(
                {
                    "title": f"Generated scenario {self.scenario_calls}",
                    "goal": "Get a refund for boots delivered 40 days ago.",
                    "known_facts": ["Order NW-55555, email gen@example.com"],
                    "hidden_facts": ["The boots were never worn."],
                    "opening": "Hi, I want a refund for my boots please.",
                    "must_say": [],
                    "must_not_say": [],
                    "rubric": [],
                }
            )
        if sampling.json_schema and "into a training scenario" in first:
            self.harvest_calls += 1
            return json.dumps(harvest_reply(json.loads(sampling.json_schema), self.harvest_calls))
        if sampling.json_schema:
            return json.dumps({"strategies": [self.proposal]})
        return f"I can't refund the card after 30 days, but I can offer {GOOD_PHRASE}."


def harvest_reply(schema: dict, n: int) -> dict:
    """A harvested scenario as the scripted teacher writes it, shaped by the schema it was asked
    for (the first intent and persona values offered, the first agent turn)."""
    props = schema["properties"]
    out: dict = {
        "title": f"Harvested: refund past 30 days {n}",
        "goal": f"Get money back for a jacket delivered 45 days ago, case {n}.",
        "known_facts": [f"Order NW-7{n:04d}", "Delivered 45 days ago"],
        "hidden_facts": ["Tags still attached"],
        "must_say": [],
        "must_not_say": [],
        "rubric": ["Offers store credit for a return past 30 days"],
    }
    if "weakest_turn" in props:
        out["weakest_turn"] = 1
    if "intent" in props:
        out["intent"] = props["intent"]["enum"][0]
    if "persona" in props:
        out["persona"] = {k: v["enum"][0] for k, v in props["persona"]["properties"].items()}
    return out


ROLES = ("teacher", "student", "customer", "judge")


def role_functions(proposal: dict[str, str] | None = None) -> dict[str, Callable[..., str]]:
    """A fresh scripted world, role by role; the teacher proposes ``proposal`` (HELPFUL)."""
    return {
        "teacher": Teacher(proposal or HELPFUL),
        "student": student_fn,
        "customer": Customer(),
        "judge": judge_fn,
    }


def models(proposal: dict[str, str], customer: Customer | None = None, teacher: Teacher | None = None):
    from strategist.engine.grow import RoleModels

    return RoleModels(
        teacher=FunctionModel(teacher or Teacher(proposal), name="scripted/teacher"),
        student=FunctionModel(student_fn, name="scripted/student"),
        customer=FunctionModel(customer or Customer(), name="scripted/customer"),
        judge=FunctionModel(judge_fn, name="scripted/judge"),
    )
