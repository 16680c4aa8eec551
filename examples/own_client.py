"""Keep your own LLM client; let the library write the system prompt.

Run:  .venv/bin/python examples/own_client.py

``library.augment(messages)`` returns the same OpenAI-style messages with a system prompt that
carries the strategies fitting the conversation (your own system message, if any, stays first in
it); ``.refs`` says which strategies went in, to log next to the reply. Here "your client" is
llama-cpp-python running the embedded model, so the example runs offline; with the official
client it is the same call:

    from openai import OpenAI
    reply = OpenAI().chat.completions.create(model="gpt-4o-mini", messages=messages)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _library import make_library

from strategist import StrategyLibrary
from strategist.models.embedded import smollm2_path


def main() -> None:
    from llama_cpp import Llama  # your client; any OpenAI-style chat API works the same way

    llm = Llama(model_path=str(smollm2_path()), n_ctx=4096, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        make_library(Path(tmp) / "library.db")
        library = StrategyLibrary.open(Path(tmp) / "library.db", k=2, budget=200)
        conversation = [
            {"role": "system", "content": "You are the support assistant of Northwind Outfitters. Be brief."},
            {"role": "user", "content": "My stove arrived damaged, the valve is broken. What can you do?"},
        ]
        messages = library.augment(conversation, domain="northwind")
        print("system prompt sent:\n" + messages[0]["content"] + "\n")
        reply = llm.create_chat_completion(messages=list(messages), max_tokens=60, temperature=0.2)
        print("reply:", reply["choices"][0]["message"]["content"].strip())
        print("strategies used:", messages.refs)
        for r in messages.retrieval.strategies:
            print(f"    {r.ref}: score {r.score:.2f}, {r.tokens} tokens - {r.strategy.trigger}")
        library.close()
        llm.close()


if __name__ == "__main__":
    main()
