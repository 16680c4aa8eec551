from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

from pydantic import BaseModel, Field, create_model

from ..core.dialogue import Dialogue, Judgement, RatingMethod, RubricResult
from ..core.domain import Domain, Scenario
from ..core.scoring import RATING_LABELS, expected_rating, overall_score, parse_rating, run_checks
from ..errors import ModelError
from ..models.base import ChatModel, Sampling, TokenLogprobs
from ..prompting import render
from ..structured import complete_structured


class RubricVerdict(BaseModel):
    passed: bool
    reason: str = Field(default="", max_length=100)


@functools.lru_cache(maxsize=256)  # one class per shape: building a model is slow, and so is its schema
def verdict_model(n_items: int, n_turns: int) -> type[BaseModel]:
    """The judge's answer, shaped for this dialogue: exactly one verdict per rubric item.

    Free text comes last so that a reply cut off at the token limit loses only the critique's end.
    """
    return create_model(
        "Verdict",
        rubric=(list[RubricVerdict], Field(min_length=n_items, max_length=n_items)),
        weakest_turn=(int, Field(ge=1, le=max(1, n_turns))),
        critique=(str, Field(max_length=400)),
    )


@dataclass
class Judge:
    """Deterministic checks, a rubric verdict with critique, and an overall rating.

    The rating is the probability-weighted expected rating where the backend returns
    log-probabilities, otherwise the digit it wrote; the judgement records which.
    """

    model: ChatModel
    domain: Domain
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=420))
    attempts: int = 3

    async def judge(self, scenario: Scenario, dialogue: Dialogue, *, seed: int | None = None) -> Judgement:
        criteria = scenario.criteria(self.domain)
        checks = run_checks(dialogue, criteria)
        n_turns = len(dialogue.student_turns)
        common = {"domain": self.domain, "scenario": scenario}

        verdict_prompt = render(
            "judge_verdict.j2",
            **common,
            transcript=dialogue.transcript(numbered=True),
            rubric=criteria.rubric,
            student_turns=max(1, n_turns),
        )
        verdict, _ = await complete_structured(
            self.model,
            [{"role": "user", "content": verdict_prompt}],
            verdict_model(len(criteria.rubric), n_turns),
            sampling=replace(self.sampling, seed=seed),
            attempts=self.attempts,
        )
        data = verdict.model_dump()
        rubric = [
            RubricResult(item=item, passed=v["passed"], reason=v["reason"])
            for item, v in zip(criteria.rubric, data["rubric"], strict=True)
        ]

        rating, method = await self._rating(
            render("judge_rating.j2", **common, transcript=dialogue.transcript()), seed
        )
        return Judgement(
            dialogue_id=dialogue.id,
            judge_model=self.model.name,
            checks=checks,
            rubric=rubric,
            rating=rating,
            rating_method=method,
            score=overall_score(checks, rubric, rating),
            critique=data["critique"],
            weakest_turn=data["weakest_turn"] if n_turns else None,
        )

    async def _rating(self, prompt: str, seed: int | None) -> tuple[float, RatingMethod]:
        s = Sampling(temperature=0.0, max_tokens=3, seed=seed, top_logprobs=10)
        for _ in range(self.attempts):
            c = await self.model.complete([{"role": "user", "content": prompt}], s)
            rating = rating_from_logprobs(c.logprobs or [])
            if rating is not None:
                return rating, "logprobs"
            parsed = parse_rating(c.text)
            if parsed is not None:
                return float(parsed), "parsed"
            s = replace(s, seed=None if s.seed is None else s.seed + 1)
        # A judgement without its rating would be scored on different parts than its pair.
        raise ModelError(self.model.name, f"no rating in {self.attempts} answers (last: {c.text[:80]!r})")


def rating_from_logprobs(tokens: list[TokenLogprobs]) -> float | None:
    """The expected rating at the position where the model wrote its digit.

    Falls back to the first position whose alternatives include a digit (a model that wrote
    'Rating' first may still have put its rating mass there); None if there is none.
    """
    for tok in tokens:
        if tok.token.strip() in RATING_LABELS:
            return expected_rating(tok.top or {tok.token: tok.logprob})
    for tok in tokens:
        r = expected_rating(tok.top)
        if r is not None:
            return r
    return None
