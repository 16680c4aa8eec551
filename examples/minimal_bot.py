"""A support bot that answers with the strategies that fit each customer message.

Run:  .venv/bin/python examples/minimal_bot.py [LIBRARY.db]

Offline: the student is the embedded model (SmolLM2-135M, the 'local' extra), which is tiny, so
its answers are weak; the point is what goes into its prompt. Pass any litellm model name as
``student`` (e.g. "openai/gpt-4o-mini") for real answers. Without a database argument the
example builds a small library in a temporary folder.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _library import make_library

from strategist import StrategicBot
from strategist.models import Sampling

CUSTOMER = [
    "Hi, my boots were delivered 40 days ago and I'd like my money back on my card.",
    "And the tent I ordered is back-ordered: can you promise it arrives by Friday?",
]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = sys.argv[1] if len(sys.argv) > 1 else str(Path(tmp) / "library.db")
        if len(sys.argv) == 1:
            make_library(Path(db))
        bot = StrategicBot(
            student="embedded/smollm2",
            library=db,
            domain="northwind",
            sampling=Sampling(temperature=0.2, max_tokens=60),
        )
        messages: list[dict[str, str]] = []
        for text in CUSTOMER:
            messages.append({"role": "user", "content": text})
            print(f"customer: {text}")
            print("bot: ", end="", flush=True)
            stream = bot.stream(messages)  # the strategies are chosen before the first word
            for piece in stream:
                print(piece, end="", flush=True)
            print(f"\n    strategies used: {', '.join(stream.strategies) or 'none'}\n")
            messages.append(stream.reply.as_message())
        # Without streaming; a fresh conversation.
        reply = bot.reply([{"role": "user", "content": "My lantern arrived damaged. What now?"}])
        print(f"customer: My lantern arrived damaged. What now?\nbot: {reply.text.strip()}")
        print(f"    strategies used: {', '.join(reply.strategies) or 'none'}")
        bot.close()


if __name__ == "__main__":
    main()
