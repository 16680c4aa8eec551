"""Where the simulated customer broke character, found deterministically from the dialogue and its
scenario. A dialogue with such a fault says nothing about the agent: the gate leaves its pair out.

The checks look only at what the simulator wrote (the customer's turns after the scenario's own
opening line):

- ``spoke_as_agent``: the customer wrote as the support agent ("How can I help you today?",
  "Agent: ...", "Thank you for contacting ...");
- ``revealed_hidden_fact``: it stated a fact the scenario lets it reveal only when asked, before the
  agent asked anything about it;
- ``invented_fact``: it gave an order number, an email address or an amount that is in none of the
  scenario's facts, goal or opening;
- ``ended_early``: it said the stop marker while the agent was waiting for its answer (the agent's
  last message asked a question).
"""

from __future__ import annotations

import re
from typing import Literal

from .dialogue import Dialogue, Turn
from .domain import Scenario
from .text import words

FaultKind = Literal["spoke_as_agent", "revealed_hidden_fact", "invented_fact", "ended_early"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "spoke_as_agent",
    "revealed_hidden_fact",
    "invented_fact",
    "ended_early",
)

_AGENT_VOICE = re.compile(
    r"^\s*(agent|support|assistant|representative)\s*:"
    r"|\bhow (can|may) i (help|assist) you\b"
    r"|\bthank(s| you) for (contacting|reaching out to|choosing)\b"
    r"|\bas (a|an|your) (customer[- ]?(support|service) )?(agent|representative|assistant)\b"
    r"|\bis there anything else i can (help|do)\b",
    re.IGNORECASE,
)
# Facts a customer can invent that can be told apart from the scenario's own: ids, emails, amounts.
_IDS = re.compile(r"\b[A-Z]{1,4}-?\d{4,}\b|[\w.+-]+@[\w-]+\.[\w.]+|\$\s?\d+(?:[.,]\d+)?")
# Share of a hidden fact's words a customer message must contain to count as stating it.
REVEAL_OVERLAP = 0.6


def _customer_turns(d: Dialogue, scenario: Scenario) -> list[tuple[int, Turn]]:
    """The simulator's own turns (index, turn): every customer turn but the scenario's opening."""
    out = [(i, t) for i, t in enumerate(d.turns) if t.role == "customer"]
    if out and out[0][1].content.strip() == scenario.opening.strip():
        out = out[1:]
    return out


def _asked_about(fact_words: frozenset[str], agent_turns: list[Turn]) -> bool:
    return any("?" in t.content and words(t.content) & fact_words for t in agent_turns)


def find_faults(d: Dialogue, scenario: Scenario, *, stop_marker_used: bool | None = None) -> list[FaultKind]:
    """The kinds of simulator fault in ``d`` (each at most once, in FAULT_KINDS order)."""
    found: set[FaultKind] = set()
    allowed_ids = {
        m.group(0).lower().replace(" ", "")
        for text in [scenario.goal, scenario.opening, *scenario.known_facts, *scenario.hidden_facts]
        for m in _IDS.finditer(text)
    }
    hidden = [(f, words(f)) for f in scenario.hidden_facts]
    for i, t in _customer_turns(d, scenario):
        before = [x for x in d.turns[:i] if x.is_reply]
        if _AGENT_VOICE.search(t.content):
            found.add("spoke_as_agent")
        said = words(t.content)
        for _fact, fw in hidden:
            if fw and len(said & fw) / len(fw) >= REVEAL_OVERLAP and not _asked_about(fw, before):
                found.add("revealed_hidden_fact")
        for m in _IDS.finditer(t.content):
            if m.group(0).lower().replace(" ", "") not in allowed_ids:
                found.add("invented_fact")
    ended = d.ended_by == "stop_marker" if stop_marker_used is None else stop_marker_used
    replies = d.student_turns
    if ended and replies and replies[-1].content.rstrip().endswith("?"):
        found.add("ended_early")
    return [k for k in FAULT_KINDS if k in found]
