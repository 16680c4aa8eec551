from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..core.dialogue import StrategyText, Turn
from ..core.domain import Domain
from ..models.base import ChatModel, Completion, Message, Sampling, ToolParams, complete
from ..prompting import render


def agent_messages(system: str, turns: Sequence[Turn]) -> list[Message]:
    """The conversation from the agent's side: the customer is the user; the agent's tool calls
    and their results are assistant ``tool_calls`` and ``tool`` messages (OpenAI's format)."""
    msgs: list[Message] = [{"role": "system", "content": system}]
    msgs += [t.as_message() for t in turns]
    return msgs


@dataclass
class Student:
    """The bot being improved: policy plus whatever strategies it is given, and the domain's tools."""

    model: ChatModel
    domain: Domain
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.7, max_tokens=160))
    template: str = "student_system.j2"

    def system_prompt(self, strategies: Sequence[StrategyText] = (), *, tools: bool = False) -> str:
        return render(self.template, domain=self.domain, strategies=list(strategies), tools=tools)

    async def reply(
        self,
        turns: Sequence[Turn],
        strategies: Sequence[StrategyText] = (),
        *,
        seed: int | None = None,
        tools: ToolParams | None = None,
    ) -> Completion:
        s = replace(self.sampling, seed=seed) if seed is not None else self.sampling
        offered = tools is not None and tools.choice != "none"
        system = self.system_prompt(strategies, tools=offered)
        return await complete(self.model, agent_messages(system, turns), s, tools)
