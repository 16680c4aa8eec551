"""Turning a dialogue's checks and the judge's answers into one score in [0, 1]."""

from __future__ import annotations

import math
import re

from .dialogue import RATING_MAX, RATING_MIN, CheckResult, Dialogue, overall_score
from .domain import SuccessCriteria

__all__ = ["RATING_LABELS", "expected_rating", "overall_score", "parse_rating", "run_checks"]

RATING_LABELS = tuple(str(r) for r in range(RATING_MIN, RATING_MAX + 1))


def run_checks(dialogue: Dialogue, criteria: SuccessCriteria) -> list[CheckResult]:
    """must_say passes if any agent turn says it; must_not_say passes if none does. An expected
    action passes if the agent made that call and it succeeded (with ``ordered_actions``, in the
    order listed); a forbidden action passes if the agent never attempted it (a call the tool
    refused still counts as attempted)."""
    said = "\n".join(t.content for t in dialogue.student_turns)
    out = [CheckResult(kind="must_say", check=c.label, passed=c.found_in(said)) for c in criteria.must_say]
    out += [
        CheckResult(kind="must_not_say", check=c.label, passed=not c.found_in(said))
        for c in criteria.must_not_say
    ]
    calls = [(c.name, c.parsed_arguments(), result) for c, result in dialogue.tool_calls]
    done = [(name, args) for name, args, result in calls if result is not None and not result.error]
    position = 0  # ordered: each expected action must come after the one before it
    for action in criteria.actions:
        if criteria.ordered_actions:
            found = next((i for i in range(position, len(done)) if action.matches(*done[i])), None)
            if found is not None:
                position = found + 1
            passed = found is not None
        else:
            passed = any(action.matches(name, args) for name, args in done)
        out.append(CheckResult(kind="action", check=action.label, passed=passed))
    out += [
        CheckResult(
            kind="forbidden_action",
            check=action.label,
            passed=not any(action.matches(name, args) for name, args, _ in calls),
        )
        for action in criteria.forbidden_actions
    ]
    return out


def expected_rating(top: dict[str, float]) -> float | None:
    """The probability-weighted rating over the rating tokens among the top log-probabilities.

    Returns None when no rating token appears among them.
    """
    mass: dict[int, float] = {}
    for token, logprob in top.items():
        label = token.strip()
        if label in RATING_LABELS:
            mass[int(label)] = mass.get(int(label), 0.0) + math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(r * p for r, p in mass.items()) / total


def parse_rating(text: str) -> int | None:
    """The first standalone digit in the rating range, e.g. 'Rating: 4' -> 4."""
    m = re.search(rf"(?<!\d)([{RATING_MIN}-{RATING_MAX}])(?!\d)", text)
    return int(m.group(1)) if m else None
