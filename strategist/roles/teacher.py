from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, create_model

from ..core.cells import Cell
from ..core.dialogue import Dialogue, Turn
from ..core.domain import Difficulty, Domain, Scenario, SuccessCriteria
from ..models.base import ChatModel, Sampling, ToolParams, complete
from ..prompting import render
from ..structured import Content, bounded_int, complete_structured
from .student import agent_messages

# Blank items would only fail later, when the scenario is built: reject them here, where the
# model is re-asked with the error.
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=80)]
Item = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=300)]


def _words(text: str) -> str:
    # A trigger or guidance is a sentence: "Trigger_1.1.0" or "items.items.description" (what a
    # small model writes from the schema) is not, and is re-asked.
    if len(text.split()) < 3:
        raise ValueError("write a sentence of at least three words")
    return text


Sentence = Annotated[str, AfterValidator(_words)]


class ScenarioDraft(Content):
    """What the teacher writes for a new scenario; persona and intent come from the chosen cell."""

    title: str = Field(min_length=3, max_length=120)
    goal: str = Field(min_length=5, max_length=400)
    known_facts: list[Item] = Field(default_factory=list, max_length=6)
    hidden_facts: list[Item] = Field(default_factory=list, max_length=4)
    opening: str = Field(min_length=3, max_length=500)
    must_say: list[Phrase] = Field(default_factory=list, max_length=2)
    must_not_say: list[Phrase] = Field(default_factory=list, max_length=2)
    rubric: list[Item] = Field(default_factory=list, max_length=3)


class HarvestDraft(Content):
    """What the teacher reads from a conversation for a harvested scenario (see ``harvest_model``:
    the model asked for adds intent, persona and the weakest turn where they are not known)."""

    title: str = Field(min_length=3, max_length=120)
    goal: str = Field(min_length=5, max_length=400)
    known_facts: list[Item] = Field(default_factory=list, max_length=6)
    hidden_facts: list[Item] = Field(default_factory=list, max_length=4)
    must_say: list[Phrase] = Field(default_factory=list, max_length=2)
    must_not_say: list[Phrase] = Field(default_factory=list, max_length=2)
    rubric: list[Item] = Field(min_length=1, max_length=3)


@functools.lru_cache(maxsize=64)
def harvest_model(
    intents: tuple[str, ...] | None,
    persona: tuple[tuple[str, tuple[str, ...]], ...] | None,
    turns: int | None,
) -> type[HarvestDraft]:
    """The draft asked for: with ``intents`` and ``persona`` (the domain's choices) when the
    conversation's customer is not known, and ``weakest_turn`` (1 to ``turns``) when nobody judged
    it. Choices are enums, so a backend that constrains output to the schema cannot go wrong."""
    fields: dict[str, Any] = {}
    if turns is not None:
        fields["weakest_turn"] = (bounded_int(1, max(1, turns)), ...)
    if intents is not None:
        fields["intent"] = (Literal[intents], ...)
    if persona is not None:
        dims: dict[str, Any] = {name: (Literal[values], ...) for name, values in persona}
        fields["persona"] = (create_model("Persona", **dims), ...)
    if not fields:
        return HarvestDraft
    model: type[HarvestDraft] = create_model("Harvest", __base__=HarvestDraft, **fields)
    return model


class Proposal(Content):
    """One proposed strategy."""

    trigger: Sentence = Field(min_length=10, max_length=300, description="when the strategy applies")
    guidance: Sentence = Field(min_length=10, max_length=600, description="what to do or avoid")
    example: str = Field(default="", max_length=400, description="an example phrasing")


class Proposals(BaseModel):
    strategies: list[Proposal] = Field(min_length=1, max_length=3)


class ContrastProposal(Content):
    """A strategy written from a best-vs-worst contrast; its example is the best run itself."""

    trigger: Sentence = Field(min_length=10, max_length=300, description="when the strategy applies")
    guidance: Sentence = Field(min_length=10, max_length=600, description="what to do or avoid")


class ContrastProposals(BaseModel):
    strategies: list[ContrastProposal] = Field(min_length=1, max_length=3)


@dataclass
class Teacher:
    """Writes scenarios, plays the reference agent, and coaches."""

    model: ChatModel
    domain: Domain
    scenario_sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.9, max_tokens=700))
    reply_sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.3, max_tokens=200))
    coach_sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.5, max_tokens=700))
    attempts: int = 3

    async def write_scenario(
        self, cell: Cell, difficulty: Difficulty, *, avoid: Sequence[str] = (), seed: int | None = None
    ) -> Scenario:
        prompt = render(
            "teacher_scenario.j2",
            domain=self.domain,
            persona=cell.persona,
            intent=self.domain.intent(cell.intent),
            difficulty=difficulty,
            avoid=list(avoid),
        )
        draft, _ = await complete_structured(
            self.model,
            [{"role": "user", "content": prompt}],
            ScenarioDraft,
            sampling=replace(self.scenario_sampling, seed=seed),
            attempts=self.attempts,
        )
        return Scenario(
            domain=self.domain.id,
            title=draft.title,
            intent=cell.intent,
            persona=dict(cell.persona),
            goal=draft.goal,
            known_facts=draft.known_facts,
            hidden_facts=draft.hidden_facts,
            opening=draft.opening,
            success=SuccessCriteria.model_validate(
                {"must_say": draft.must_say, "must_not_say": draft.must_not_say, "rubric": draft.rubric}
            ),
            difficulty=difficulty,
            origin="generated",
            split="train",
        )

    async def reference_reply(
        self, prefix: Sequence[Turn], *, seed: int | None = None, tools: ToolParams | None = None
    ) -> str:
        """What the teacher, as the agent with the same policy, tools and no strategies, does next:
        its reply, or the tool calls it would make first (described, not executed)."""
        system = render("student_system.j2", domain=self.domain, strategies=[], tools=tools is not None)
        c = await complete(
            self.model, agent_messages(system, prefix), replace(self.reply_sampling, seed=seed), tools
        )
        calls = "; ".join(f"calls {t.name}({t.arguments})" for t in c.tool_calls or [])
        return " ".join(p for p in (f"({calls})" if calls else "", c.text.strip()) if p)

    async def propose(
        self,
        scenario: Scenario,
        prefix: Sequence[Turn],
        student_reply: str,
        reference_reply: str,
        critique: str,
        *,
        max_strategies: int = 3,
        seed: int | None = None,
    ) -> list[Proposal]:
        prefix_text = Dialogue(seed=0, turns=list(prefix)).transcript()
        prompt = render(
            "teacher_coach.j2",
            domain=self.domain,
            scenario=scenario,
            prefix=prefix_text or "(none)",
            student_reply=student_reply,
            reference_reply=reference_reply,
            critique=critique or "(none)",
            max_strategies=max_strategies,
        )
        out, _ = await complete_structured(
            self.model,
            [{"role": "user", "content": prompt}],
            Proposals,
            sampling=replace(self.coach_sampling, seed=seed),
            attempts=self.attempts,
        )
        return out.strategies[:max_strategies]

    async def contrast(
        self,
        scenario: Scenario,
        best: Dialogue,
        worst: Dialogue,
        *,
        best_score: float,
        worst_score: float,
        best_critique: str,
        worst_critique: str,
        max_strategies: int = 3,
        seed: int | None = None,
    ) -> list[ContrastProposal]:
        """Strategies from the student's own best and worst run of one scenario: what it did when
        it did well, written as advice for every time. Needs no reference reply from the teacher."""
        prompt = render(
            "teacher_contrast.j2",
            domain=self.domain,
            scenario=scenario,
            best=best.transcript(),
            worst=worst.transcript(),
            best_score=best_score,
            worst_score=worst_score,
            best_critique=best_critique or "(none)",
            worst_critique=worst_critique or "(none)",
            max_strategies=max_strategies,
        )
        out, _ = await complete_structured(
            self.model,
            [{"role": "user", "content": prompt}],
            ContrastProposals,
            sampling=replace(self.coach_sampling, seed=seed, max_tokens=400),
            attempts=self.attempts,
        )
        return out.strategies[:max_strategies]

    async def harvest(
        self,
        transcript: str,
        *,
        agent_turns: int,
        weak_turn: int | None,
        critique: str = "",
        outcome: str = "",
        persona: dict[str, str] | None = None,
        intent: str | None = None,
        seed: int | None = None,
    ) -> tuple[HarvestDraft, dict[str, Any]]:
        """Read a scenario from a conversation (``transcript``, agent turns numbered). Without
        ``persona``/``intent`` the teacher picks them from the domain's; without ``weak_turn`` it
        names the turn. Returns the draft and what it chose: {intent, persona, weakest_turn}."""
        known = persona is not None and intent is not None
        model = harvest_model(
            None if known else tuple(i.id for i in self.domain.intents),
            None if known else tuple((k, tuple(v)) for k, v in self.domain.persona_dimensions.items()),
            None if weak_turn is not None else max(1, agent_turns),
        )
        prompt = render(
            "teacher_harvest.j2",
            domain=self.domain,
            transcript=transcript,
            weak_turn=weak_turn,
            critique=critique,
            outcome=outcome,
            persona=persona if known else None,
            intent=self.domain.intent(intent) if known and intent else None,
        )
        draft, _ = await complete_structured(
            self.model,
            [{"role": "user", "content": prompt}],
            model,
            sampling=replace(self.scenario_sampling, seed=seed),
            attempts=self.attempts,
        )
        data = draft.model_dump()
        chosen = {
            "intent": intent if known else data["intent"],
            "persona": dict(persona or {}) if known else dict(data["persona"]),
            "weakest_turn": weak_turn if weak_turn is not None else data["weakest_turn"],
        }
        return draft, chosen
