from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..core.dialogue import Turn
from ..core.domain import Domain, Scenario
from ..models.base import ChatModel, Message, Sampling
from ..prompting import render

CHAT_OPENS = "(The support chat opens. Write your first message.)"


@dataclass
class CustomerReply:
    text: str
    stop: bool


@dataclass
class Customer:
    """A simulated customer following a scenario; says the domain's stop marker when done."""

    model: ChatModel
    domain: Domain
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.8, max_tokens=100))

    # The system prompts rendered so far, by scenario (held, compared by identity): every turn of
    # every sample of a scenario asks for the same one.
    _systems: dict[int, tuple[Scenario, Domain, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def system_prompt(self, scenario: Scenario) -> str:
        held = self._systems.get(id(scenario))
        if held is not None and held[0] is scenario and held[1] is self.domain:
            return held[2]
        text = render(
            "customer_system.j2", domain=self.domain, scenario=scenario, stop_marker=self.domain.stop_marker
        )
        if len(self._systems) >= 1024:  # a long harvest or eval: keep the memory bounded
            self._systems.clear()
        self._systems[id(scenario)] = (scenario, self.domain, text)
        return text

    def messages(self, scenario: Scenario, turns: Sequence[Turn]) -> list[Message]:
        system = self.system_prompt(scenario)
        # From the customer's side the agent is the user and the customer is the assistant.
        # Many chat templates insist on user/assistant alternation starting with the user, so a
        # short cue stands in for the user before the customer's opening line.
        msgs: list[Message] = [{"role": "system", "content": system}, {"role": "user", "content": CHAT_OPENS}]
        # The customer reads the agent's replies, never its tool calls or their results.
        msgs += [
            {"role": "assistant" if t.role == "customer" else "user", "content": t.content}
            for t in turns
            if t.role == "customer" or t.is_reply
        ]
        return msgs

    async def reply(
        self, scenario: Scenario, turns: Sequence[Turn], *, seed: int | None = None
    ) -> CustomerReply:
        s = replace(self.sampling, seed=seed)
        c = await self.model.complete(self.messages(scenario, turns), s)
        return split_stop(c.text, self.domain.stop_marker)


def split_stop(text: str, marker: str) -> CustomerReply:
    """Strip the stop marker (and anything after it) from a customer message."""
    idx = text.find(marker)
    if idx == -1:
        return CustomerReply(text.strip(), False)
    return CustomerReply(text[:idx].strip(), True)
