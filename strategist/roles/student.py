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
    # The last prompt rendered and what it was rendered from: a dialogue asks for the same one at
    # every turn. Held objects, compared by identity, so an id is never reused meanwhile.
    _last: tuple[str, Domain, list[StrategyText], bool, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def system_prompt(self, strategies: Sequence[StrategyText] = (), *, tools: bool = False) -> str:
        last = self._last
        if (
            last is not None
            and last[0] == self.template
            and last[1] is self.domain
            and last[3] == tools
            and len(last[2]) == len(strategies)
            and all(a is b for a, b in zip(last[2], strategies, strict=True))
        ):
            return last[4]
        held = list(strategies)
        text = render(self.template, domain=self.domain, strategies=held, tools=tools)
        self._last = (self.template, self.domain, held, tools, text)
        return text

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
