from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, replace

from pydantic import BaseModel, Field, create_model

from ..core.dialogue import Dialogue, Judgement, RatingMethod, RubricResult
from ..core.domain import Domain, Scenario
from ..core.evidence import PairwiseVote
from ..core.faults import find_faults
from ..core.scoring import RATING_LABELS, expected_rating, overall_score, parse_rating, run_checks
from ..errors import ModelError, StructuredOutputError
from ..models.base import ChatModel, Sampling, TokenLogprobs
from ..prompting import render
from ..structured import bounded_int, complete_structured

# The critique is kept short: a small judge that loops inside a long string is cut off at the
# token limit, and a reply is only as valid as what fits in it.
CRITIQUE_CHARS = 240


@functools.lru_cache(maxsize=256)  # one class per shape: building a model is slow, and so is its schema
def verdict_model(n_items: int, n_turns: int) -> type[BaseModel]:
    """The judge's answer, shaped for this dialogue: one true/false per rubric item, in order, the
    weakest turn and a short critique. Compact on purpose (no reason per item): the whole answer
    fits the token limit, and free text comes last so that a cut-off reply loses only its end."""
    top = max(1, n_turns)
    return create_model(
        "Verdict",
        passed=(list[bool], Field(min_length=n_items, max_length=n_items)),
        weakest_turn=(bounded_int(1, top), ...),
        critique=(str, Field(max_length=CRITIQUE_CHARS)),
    )


def verdict_tokens(n_items: int) -> int:
    """A token limit that fits the answer: the JSON frame, a boolean per item, a full critique."""
    return 40 + 3 * n_items + CRITIQUE_CHARS // 2


PAIRWISE_LABELS = {"A": "A", "B": "B", "T": "tie"}
_PAIRWISE_ANSWER = re.compile(r"\b(A|B|T|tie|neither)\b", re.IGNORECASE)


@dataclass
class Judge:
    """Deterministic checks, a rubric verdict with critique, and an overall rating; and, for the
    gate, a pairwise verdict on two dialogues of the same scenario and seed.

    The rating is the probability-weighted expected rating where the backend returns
    log-probabilities, otherwise the digit it wrote; the judgement records which. When the rubric
    answer still fails after its re-asks, the judgement falls back to the checks and the rating
    (``partial``): the dialogue is judged, on fewer parts.
    """

    model: ChatModel
    domain: Domain
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=200))
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
        rubric: list[RubricResult] = []
        critique, weakest, partial = "", None, False
        try:
            verdict, _ = await complete_structured(
                self.model,
                [{"role": "user", "content": verdict_prompt}],
                verdict_model(len(criteria.rubric), n_turns),
                sampling=replace(
                    self.sampling,
                    seed=seed,
                    max_tokens=max(self.sampling.max_tokens, verdict_tokens(len(criteria.rubric))),
                ),
                attempts=self.attempts,
            )
        except StructuredOutputError:
            if not checks and not criteria.rubric:
                raise
            partial = bool(criteria.rubric)
        else:
            data = verdict.model_dump()
            rubric = [
                RubricResult(item=item, passed=ok)
                for item, ok in zip(criteria.rubric, data["passed"], strict=True)
            ]
            critique, weakest = data["critique"], data["weakest_turn"] if n_turns else None

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
            critique=critique,
            weakest_turn=weakest,
            partial=partial,
            faults=list(find_faults(dialogue, scenario)),
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

    async def compare(
        self, scenario: Scenario, without: Dialogue, with_: Dialogue, *, seed: int | None = None
    ) -> list[PairwiseVote]:
        """The pairwise verdict on a gate pair, asked twice with the order swapped (the dialogue
        with the candidate first, then second), so that a judge's taste for one position cancels."""
        votes = []
        for order, (first, second) in (("with_first", (with_, without)), ("without_first", (without, with_))):
            prompt = render(
                "judge_pairwise.j2",
                domain=self.domain,
                scenario=scenario,
                first=first.transcript(),
                second=second.transcript(),
            )
            votes.append(await self._pairwise(prompt, order, seed))
        return votes

    async def _pairwise(self, prompt: str, order: str, seed: int | None) -> PairwiseVote:
        s = Sampling(temperature=0.0, max_tokens=2, seed=seed, top_logprobs=10)
        for _ in range(self.attempts):
            c = await self.model.complete([{"role": "user", "content": prompt}], s)
            mass = pairwise_mass(c.logprobs or [])
            if mass is not None:
                answer = max(mass, key=lambda k: mass[k])
                return _vote(order, answer, "logprobs", mass)
            m = _PAIRWISE_ANSWER.search(c.text)
            if m:
                word = m.group(1).upper()
                answer = word if word in ("A", "B") else "tie"
                return _vote(order, answer, "parsed", None)
            s = replace(s, seed=None if s.seed is None else s.seed + 1)
        raise ModelError(
            self.model.name, f"no pairwise answer in {self.attempts} answers (last: {c.text[:80]!r})"
        )


def _vote(order: str, answer: str, method: str, mass: dict[str, float] | None) -> PairwiseVote:
    p_with = p_without = p_tie = None
    if mass is not None:
        first, second = mass["A"], mass["B"]
        p_with, p_without = (first, second) if order == "with_first" else (second, first)
        p_tie = mass["tie"]
    return PairwiseVote.model_validate(
        {
            "order": order,
            "answer": answer,
            "method": method,
            "p_with": p_with,
            "p_without": p_without,
            "p_tie": p_tie,
        }
    )


def pairwise_mass(tokens: list[TokenLogprobs]) -> dict[str, float] | None:
    """The probability on A, B and tie (T) at the first position whose alternatives include one of
    them, renormalised over the three; None if no position has any."""
    for tok in tokens:
        top = tok.top or {tok.token: tok.logprob}
        mass = {"A": 0.0, "B": 0.0, "tie": 0.0}
        for token, logprob in top.items():
            label = PAIRWISE_LABELS.get(token.strip().upper()[:1]) if token.strip() else None
            if label is not None and len(token.strip()) == 1:
                mass[label] += math.exp(logprob)
        total = sum(mass.values())
        if total > 0:
            return {k: v / total for k, v in mass.items()}
    return None


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
