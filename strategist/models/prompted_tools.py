"""Tool calling for a model whose chat template has none (the embedded SmolLM2): the tools are
listed in the system prompt, a JSON schema constrains each answer to either a reply or one call of
an offered tool (with that tool's arguments), and earlier calls and results are written into the
conversation as text. A small model calls tools badly; what it writes is still parsed into a
tool call or a reply, never an exception: executing a bad call gives the model an error result."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..prompting import render
from ..structured import repair_truncated
from .base import Message, ToolCallRequest, ToolParams

REPLY = "reply"
_REPLY_TEXT = re.compile(r'"reply"\s*:\s*"((?:[^"\\]|\\.)*)', re.DOTALL)
# A small model loops inside a string ("cancel_order_cancel_order_..."): bounded strings end.
MAX_ARGUMENT_CHARS = 200
MAX_REPLY_CHARS = 600
MAX_ITEMS = 20


def _bounded(schema: Any) -> Any:
    """A tool's argument schema with every string and list given an upper bound (where it has
    none), so the grammar ends a runaway value instead of the token limit cutting the call off."""
    if isinstance(schema, list):
        return [_bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _bounded(v) for k, v in schema.items()}
    kinds = out.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "string" in kinds and "maxLength" not in out and "enum" not in out and "const" not in out:
        out["maxLength"] = MAX_ARGUMENT_CHARS
    if "array" in kinds and "maxItems" not in out:
        out["maxItems"] = MAX_ITEMS
    return out


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    f = tool.get("function", tool)
    return f if isinstance(f, dict) else {}


def offered(tools: ToolParams) -> list[dict[str, Any]]:
    """The tools this request lets the model call (tool_choice narrows them)."""
    if tools.choice == "none":
        return []
    functions = [_function(t) for t in tools.tools]
    if isinstance(tools.choice, dict):
        wanted = _function(tools.choice).get("name")
        functions = [f for f in functions if f.get("name") == wanted]
    return [f for f in functions if f.get("name")]


def answer_schema(tools: ToolParams) -> dict[str, Any] | None:
    """A reply, or a call of one offered tool with its own argument schema; only a reply when tools
    exist but none may be called; None: no tools."""
    branches: list[dict[str, Any]] = []
    for f in offered(tools):
        params = _bounded(f.get("parameters") or {"type": "object"})
        branches.append(
            {
                "type": "object",
                "properties": {"tool": {"const": f["name"]}, "arguments": params},
                "required": ["tool", "arguments"],
            }
        )
    # Not empty (a small model otherwise "replies" with nothing after a tool result), and bounded.
    reply = {
        "type": "object",
        "properties": {REPLY: {"type": "string", "minLength": 1, "maxLength": MAX_REPLY_CHARS}},
        "required": [REPLY],
    }
    if not branches:
        # tool_choice "none" (e.g. past a dialogue's tool-step bound) with calls in the conversation:
        # left free, a small model writes one more call in the JSON it sees, and says nothing.
        return reply if tools.tools else None
    must_call = tools.choice == "required" or isinstance(tools.choice, dict)
    if not must_call:
        branches.insert(0, reply)
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def _signature(f: dict[str, Any]) -> str:
    props = (f.get("parameters") or {}).get("properties") or {}
    return ", ".join(
        f"{k}: {v.get('type', 'any') if isinstance(v, dict) else 'any'}" for k, v in props.items()
    )


def prompt_messages(messages: Sequence[Message], tools: ToolParams) -> list[Message]:
    """The conversation as the model sees it: the tools in the system prompt, its own earlier
    calls and replies in the JSON it answers in, tool results as user turns."""
    functions = offered(tools)
    names: dict[str, str] = {}  # tool_call_id -> tool name
    out: list[Message] = []
    for m in messages:
        role, content = m["role"], str(m.get("content") or "")
        if role == "system" and functions and not out:
            listed = [
                {
                    "name": f["name"],
                    "params": _signature(f),
                    "description": " ".join(str(f.get("description", "")).split()),
                }
                for f in functions
            ]
            out.append(
                {"role": "system", "content": render("tools_prompted.j2", system=content, tools=listed)}
            )
        elif role == "assistant" and m.get("tool_calls"):
            lines = []
            for call in m["tool_calls"]:
                f = _function(call)
                names[str(call.get("id"))] = str(f.get("name"))
                try:
                    args: Any = json.loads(f.get("arguments") or "{}")
                except (TypeError, ValueError):
                    args = f.get("arguments")
                lines.append(json.dumps({"tool": f.get("name"), "arguments": args}, ensure_ascii=False))
            out.append({"role": "assistant", "content": "\n".join(lines)})
        elif role == "assistant" and functions:
            out.append({"role": "assistant", "content": json.dumps({REPLY: content}, ensure_ascii=False)})
        elif role == "tool":
            name = m.get("name") or names.get(str(m.get("tool_call_id")), "the tool")
            # A small model otherwise repeats the same call: say what the result is for.
            note = "Reply to the customer with it, unless you need another tool first."
            out.append({"role": "user", "content": f"Result of {name}: {content}\n({note})"})
        else:
            out.append({"role": role, "content": content})
    return out


def parse_answer(text: str, tools: ToolParams, *, call_id: str) -> tuple[str, list[ToolCallRequest] | None]:
    """(reply text, tool calls) from what the model wrote."""
    stripped = text.strip()
    try:
        data = json.loads(stripped)
    except ValueError:
        # Cut off at the token limit: close what was open and keep the call or the words.
        repaired = repair_truncated(stripped)
        data = json.loads(repaired) if repaired is not None else None
    if isinstance(data, dict) and isinstance(data.get("tool"), str):
        args = data.get("arguments")
        arguments = json.dumps(args if args is not None else {}, ensure_ascii=False)
        return "", [ToolCallRequest(id=call_id, name=data["tool"], arguments=arguments)]
    if isinstance(data, dict) and isinstance(data.get(REPLY), str):
        return data[REPLY].strip(), None
    cut = _REPLY_TEXT.search(stripped)  # an answer cut off at the token limit keeps its words
    if cut:
        try:
            return json.loads(f'"{cut.group(1)}"').strip(), None
        except ValueError:
            return cut.group(1).strip(), None
    return stripped, None


def next_call_id(messages: Sequence[Message]) -> str:
    """An id no earlier tool call of this conversation has."""
    used = sum(len(m.get("tool_calls") or []) for m in messages)
    return f"call_{used}"
