from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..core.dialogue import StrategyText, Turn
from ..core.domain import Domain
from ..models.base import ChatModel, Completion, Message, Sampling
from ..prompting import render


def agent_messages(system: str, turns: Sequence[Turn]) -> list[Message]:
    """The conversation from the agent's side: the customer is the user."""
    msgs: list[Message] = [{"role": "system", "content": system}]
    msgs += [{"role": "user" if t.role == "customer" else "assistant", "content": t.content} for t in turns]
    return msgs


@dataclass
class Student:
    """The bot being improved: policy plus whatever strategies it is given."""

    model: ChatModel
    domain: Domain
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.7, max_tokens=160))
    template: str = "student_system.j2"

    def system_prompt(self, strategies: Sequence[StrategyText] = ()) -> str:
        return render(self.template, domain=self.domain, strategies=list(strategies))

    async def reply(
        self, turns: Sequence[Turn], strategies: Sequence[StrategyText] = (), *, seed: int | None = None
    ) -> Completion:
        s = replace(self.sampling, seed=seed) if seed is not None else self.sampling
        return await self.model.complete(agent_messages(self.system_prompt(strategies), turns), s)
