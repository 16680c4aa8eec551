"""A tool-using bot adopts a strategy library by changing one thing: its OpenAI client's base URL.

Run:  .venv/bin/python examples/tool_bot.py

The bot below is ordinary OpenAI function calling: two tools of its own (look an order up,
cancel it), a loop that runs the tools the model asks for and sends their results back. It
talks to ``strategist serve`` on 127.0.0.1, which adds the strategies that fit the conversation
to the system prompt and forwards everything else untouched (tools, tool calls, tool results)
to the upstream model. Offline, the upstream is the embedded model (SmolLM2-135M), which calls
tools clumsily; point ``serve`` at your own model (``--upstream openai/gpt-4o-mini``, or a vLLM
server with ``--api-base``) and the bot does not change.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from pathlib import Path

from _library import make_library

ORDERS = {"NW-1042": {"status": "pending", "items": ["Alpine 2 tent"], "total": 249.0}}


def get_order(order_id: str) -> dict:
    """The bot's own tool: its order database."""
    return ORDERS.get(order_id.upper(), {"error": f"no order {order_id}"})


def cancel_order(order_id: str, reason: str = "") -> dict:
    order = ORDERS.get(order_id.upper())
    if order is None or order["status"] != "pending":
        return {"error": "only pending orders can be cancelled"}
    order["status"] = "cancelled"
    return {"ok": True, "status": "cancelled"}


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look an order up by its number, e.g. NW-1042.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "cancel_order",
            "description": "Cancel a pending order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "reason": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
]
RUN = {"get_order": get_order, "cancel_order": cancel_order}


def bot_turn(client, messages: list[dict], *, max_steps: int = 3) -> str:
    """One reply of the bot: call the model, run the tools it asks for, until it answers."""
    for _ in range(max_steps):
        response = client.chat.completions.with_raw_response.create(
            model="support-bot", messages=messages, tools=TOOLS, max_tokens=120, temperature=0.2
        )
        print("  strategies in the prompt:", response.headers.get("x-strategist-strategies") or "none")
        message = response.parse().choices[0].message
        if not message.tool_calls:
            return message.content or ""
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            try:
                args = json.loads(call.function.arguments or "{}")
                result = RUN[call.function.name](**args)
            except (KeyError, TypeError, ValueError) as exc:  # a bad call gets an error result
                result = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  tool {call.function.name}({call.function.arguments}) -> {json.dumps(result)}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    return "Sorry, I could not finish that; a colleague will follow up."


def serve_in_background(db: Path, port: int) -> None:
    """``strategist serve --db DB --upstream embedded/smollm2 --port PORT``, in this process."""
    import uvicorn

    from strategist.models import resolve_model
    from strategist.runtime import StrategyLibrary
    from strategist.server import create_app

    app = create_app(StrategyLibrary.open(db), resolve_model("embedded/smollm2"), "northwind")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)


def main() -> None:
    from openai import OpenAI

    with tempfile.TemporaryDirectory() as tmp:
        make_library(Path(tmp) / "library.db")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        serve_in_background(Path(tmp) / "library.db", port)
        # The only line that changes in an existing bot: where its client points.
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        messages = [
            {"role": "system", "content": "You are the support assistant of Northwind Outfitters."},
            {"role": "user", "content": "Hi, where is my order NW-1042? I may want to cancel it."},
        ]
        print("customer:", messages[-1]["content"])
        print("bot:", bot_turn(client, messages))


if __name__ == "__main__":
    main()
