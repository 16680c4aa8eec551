"""The policy check: the judge model reads a strategy next to the domain policy and says whether
following it would break a rule, quoting the rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from ..core.domain import Domain
from ..models.base import ChatModel, Sampling
from ..prompting import render
from ..structured import complete_structured
from .exchange import now_stamp
from .lifecycle import Text


class PolicyVerdict(BaseModel):
    """The judge's answer. Free text last, so a reply cut off at the token limit loses only that."""

    conflict: bool
    clause: str = Field(default="", max_length=300)
    explanation: str = Field(default="", max_length=500)


@dataclass
class PolicyChecker:
    model: ChatModel
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.0, max_tokens=300))
    attempts: int = 3

    def prompt(self, domain: Domain, text: Text) -> str:
        return render("judge_policy.j2", domain=domain, strategy=text)

    async def check(self, domain: Domain, text: Text, *, version: int) -> dict[str, Any]:
        """The verdict as stored on the strategy: which model said it, on which version, when."""
        verdict, _ = await complete_structured(
            self.model,
            [{"role": "user", "content": self.prompt(domain, text)}],
            PolicyVerdict,
            sampling=self.sampling,
            attempts=self.attempts,
        )
        return {
            "conflict": verdict.conflict,
            "clause": verdict.clause.strip() if verdict.conflict else "",
            "explanation": verdict.explanation.strip(),
            "model": self.model.name,
            "version": version,
            "checked_at": now_stamp(),
        }


def policy_flag(check: dict[str, Any] | None, version: int) -> str:
    """A short label for tables: 'CONFLICT: <clause>', 'ok', or '-' when never checked."""
    if not check:
        return "-"
    stale = "" if check.get("version") == version else f" (checked v{check.get('version')})"
    if check.get("conflict"):
        return f"CONFLICT: {check.get('clause') or 'see explanation'}{stale}"
    return f"ok{stale}"
