"""A dialogue: the customer opens, then student and customer alternate until the stop marker or
the turn limit. Every dialogue has a seed; each turn's seed derives from it, so the same seed on
two sides of a comparison gives the customer the same randomness.

With tools, a student turn may take tool steps before its reply: the student is offered the
tools, each call it makes is executed and its result added (OpenAI's assistant ``tool_calls`` and
``tool`` messages), and it goes on until it writes to the customer or has used ``max_tool_steps``
steps; then it is asked for its reply without tools (the turn records that the bound was hit)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..core.dialogue import Dialogue, StrategyText, ToolCall, ToolFunction, Turn
from ..core.domain import Domain, Scenario
from ..core.seeds import derive_seed
from ..core.tools import ToolSpec
from ..errors import ModelError, ToolsUnavailableError, one_line
from ..models.base import ToolParams
from ..roles import Customer, Student
from ..tools.base import Toolset

StrategyPicker = Callable[[Sequence[Turn]], Sequence[StrategyText]]
DEFAULT_TOOL_STEPS = 4


async def simulate(
    scenario: Scenario,
    domain: Domain,
    student: Student,
    customer: Customer,
    *,
    seed: int,
    sample: int = 0,
    condition: str = "baseline",
    strategies: Sequence[StrategyText] | StrategyPicker = (),
    max_turns: int | None = None,
    tools: Toolset | None = None,
    tool_specs: Sequence[ToolSpec] = (),
    max_tool_steps: int = DEFAULT_TOOL_STEPS,
) -> Dialogue:
    """Run one dialogue. A model failure (or tools that stop working) ends it with
    ``ended_by='error'``; it never raises ModelError. Budget errors do propagate: the run must
    stop. A failing or malformed tool call is given back to the student as an error result."""
    # A harvested scenario opens with the conversation it was harvested from (see replay_prefix).
    turns: list[Turn] = scenario.opening_turns
    d = Dialogue(
        scenario_id=scenario.id,
        seed=seed,
        sample=sample,
        condition=condition,
        student_model=student.model.name,
        customer_model=customer.model.name,
    )
    limit = scenario.turns_limit(domain)
    if max_turns is not None:
        limit = min(limit, max_turns)
    offered = (
        ToolParams(tuple(s.to_openai() for s in tool_specs)) if tools is not None and tool_specs else None
    )
    used_ids: set[str] = {c.id for t in turns for c in t.tool_calls}
    try:
        if tools is not None and used_ids:
            turns = await replay_tool_calls(turns, tools)
        for k in range(limit):
            picked = list(strategies(turns) if callable(strategies) else strategies)
            # Only stored strategies and candidates have refs; fixed guidelines are not recorded per turn.
            refs = [s.ref for s in picked if s.id is not None]
            step = 0
            while True:
                capped = offered is not None and step >= max_tool_steps
                # Past the bound the tools stay described (the conversation holds calls) but unusable.
                params = ToolParams(offered.tools, choice="none") if capped and offered else offered
                turn_seed = (
                    derive_seed(seed, "student", k) if step == 0 else derive_seed(seed, "student", k, step)
                )
                c = await student.reply(turns, picked, seed=turn_seed, tools=params)
                if not c.tool_calls or params is None or params.choice == "none" or tools is None:
                    turns.append(
                        Turn(role="student", content=c.text.strip(), strategies=refs, tool_limit=capped)
                    )
                    break
                calls: list[ToolCall] = []
                for request in c.tool_calls:
                    # Ids pair each result with its call: keep them unique within the dialogue.
                    call_id = (
                        request.id if request.id and request.id not in used_ids else f"call_{len(used_ids)}"
                    )
                    used_ids.add(call_id)
                    function = ToolFunction(name=request.name, arguments=request.arguments)
                    calls.append(ToolCall(id=call_id, function=function))
                turns.append(Turn(role="student", content=c.text.strip(), strategies=refs, tool_calls=calls))
                for call in calls:
                    result = await tools.call(call.name, call.function.arguments)
                    turns.append(
                        Turn(
                            role="tool",
                            content=result.content,
                            tool_call_id=call.id,
                            name=call.name,
                            error=result.error,
                            latency_ms=round(result.latency_ms, 3),
                        )
                    )
                step += 1
            if k == limit - 1:
                break
            r = await customer.reply(scenario, turns, seed=derive_seed(seed, "customer", k))
            if r.text:
                turns.append(Turn(role="customer", content=r.text))
            if r.stop:
                d.ended_by = "stop_marker"
                break
    except (ModelError, ToolsUnavailableError) as exc:
        d.ended_by, d.error = "error", one_line(exc)
    d.turns = turns
    return d


async def replay_tool_calls(turns: Sequence[Turn], tools: Toolset) -> list[Turn]:
    """The replayed opening turns of a harvested scenario with their tool calls made again, in
    order, in this dialogue's fresh tool state: what the agent looked up or changed before the
    point it went wrong holds again (an order it cancelled is cancelled), and each result shown is
    the one this state gave."""
    out: list[Turn] = []
    results: dict[str, Turn] = {}
    for t in turns:
        if t.role == "tool" and t.tool_call_id in results:
            out.append(results.pop(t.tool_call_id))
            continue
        out.append(t)
        for call in t.tool_calls:
            result = await tools.call(call.name, call.function.arguments)
            results[call.id] = t.model_copy(
                update={
                    "role": "tool",
                    "content": result.content,
                    "tool_call_id": call.id,
                    "name": call.name,
                    "error": result.error,
                    "latency_ms": round(result.latency_ms, 3),
                    "tool_calls": [],
                    "strategies": [],
                }
            )
    return out
