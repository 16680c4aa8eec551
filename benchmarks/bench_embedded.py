"""The embedded model: adapter throughput against raw llama-cpp-python, and KV-cache reuse.

Run:  .venv/bin/python benchmarks/bench_embedded.py [--repeats 3] [--prompts 6] [--turns 6] [--json]

Throughput: the same chat prompts (the student's system prompt with the Northwind policy and a
customer message, each prompt different), the same settings (temperature 0.7, fixed seed,
max_tokens 96, the same context size and threads), once through ``EmbeddedModel.complete`` (what
every role calls: a worker thread, the compute lock, usage and text read back) and once through
``Llama.create_chat_completion`` called directly. Each side has its own llama context and
evaluates every prompt from scratch (no prefix reuse on either side, so both do the same work);
the two alternate within a repeat so that both see the same machine. Tokens per second counts
prompt plus generated tokens over wall time; the ratio is adapter / raw.

Dialogue time: a 6-turn dialogue simulated by strategist (student and customer both on the
embedded model) is recorded call by call; the same calls (same messages, same sampling, same
seeds) are then replayed on fresh models with KV-cache reuse (the default: each role keeps its
own context and llama.cpp evaluates only what follows the prefix it already holds) and without
(``reuse_kv=False``: every prompt evaluated from scratch), alternating the order. The ratio is
the wall time with reuse over the time without; generated tokens are reported for both sides,
since sampling on a context evaluated in one batch or step by step can differ in the last bits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import StatsTable, late_refund, machine, northwind, spread
from strategist.models.base import ChatModel, Completion, Message, Sampling
from strategist.models.embedded import EmbeddedModel
from strategist.prompting import render

DOMAIN = northwind()
ASKS = [
    "I want my money back for a jacket delivered 45 days ago.",
    "My boots arrived with a torn seam. What can you do?",
    "Can I return the clearance tent I bought last week?",
    "The price of my coat dropped two days after I bought it.",
    "Where is my order? It was supposed to arrive on Monday.",
    "I was charged twice for the same sweater, please fix it.",
    "Can you tell me my wife's order status? She is busy.",
    "I want to exchange my hiking shoes for a larger size.",
]


def prompts(n: int) -> list[list[dict[str, str]]]:
    system = render("student_system.j2", domain=DOMAIN, strategies=[])
    return [
        [
            {"role": "system", "content": system},
            {"role": "user", "content": ASKS[i % len(ASKS)] + f" (case {i})"},
        ]
        for i in range(n)
    ]


def throughput(n_prompts: int, repeats: int) -> dict[str, Any]:
    from llama_cpp import Llama

    adapter = EmbeddedModel(reuse_kv=False)
    raw = Llama(model_path=str(adapter.path), n_ctx=adapter.n_ctx, n_threads=adapter.n_threads, verbose=False)
    settings = Sampling(temperature=0.7, max_tokens=96, seed=7)
    batch = prompts(n_prompts)

    async def via_adapter() -> tuple[float, int]:
        start, tokens = time.perf_counter(), 0
        for msgs in batch:
            c = await adapter.complete(msgs, settings)
            tokens += c.total_tokens
        return time.perf_counter() - start, tokens

    def via_raw() -> tuple[float, int]:
        start, tokens = time.perf_counter(), 0
        for msgs in batch:
            raw.reset()  # the adapter's reuse_kv=False does the same
            r = raw.create_chat_completion(messages=msgs, temperature=0.7, max_tokens=96, seed=7)
            tokens += r["usage"]["total_tokens"]
        return time.perf_counter() - start, tokens

    # Warm-up: loads both models, touches every page of the weights.
    asyncio.run(via_adapter())
    via_raw()
    ratios, rows = [], []
    for i in range(repeats):
        if i % 2 == 0:
            a, r = asyncio.run(via_adapter()), via_raw()
        else:
            r, a = via_raw(), asyncio.run(via_adapter())
        a_tps, r_tps = a[1] / a[0], r[1] / r[0]
        ratios.append(a_tps / r_tps)
        rows.append({"adapter_tok_s": round(a_tps, 1), "raw_tok_s": round(r_tps, 1), "tokens": [a[1], r[1]]})
    asyncio.run(adapter.aclose())
    raw.close()
    return {
        "prompts": n_prompts,
        "repeats": rows,
        "ratio": spread(ratios),
        "target": 0.95,
    }


class Recorder(ChatModel):
    """Passes calls through and writes down each one, for replaying the same dialogue."""

    def __init__(self, inner: ChatModel, role: str, calls: list[tuple[str, list[Message], Sampling]]) -> None:
        self.inner, self.role, self.calls, self.name = inner, role, calls, inner.name

    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> Completion:
        self.calls.append((self.role, list(messages), sampling or Sampling()))
        return await self.inner.complete(messages, sampling)


def record_dialogue(turns: int) -> list[tuple[str, list[Message], Sampling]]:
    from strategist.engine.simulate import simulate
    from strategist.roles import Customer, Student

    scenario = late_refund(
        DOMAIN,
        id=1,
        known_facts=["Order NW-48213, placed with jon@example.com"],
        hidden_facts=["The jacket was worn once."],
    )
    # No stop marker: the dialogue runs its full length.
    domain = DOMAIN.model_copy(update={"stop_marker": "###NEVER-SAID###", "max_turns": turns})
    calls: list[tuple[str, list[Message], Sampling]] = []

    async def go() -> None:
        s, c = EmbeddedModel(), EmbeddedModel()
        d = await simulate(
            scenario,
            domain,
            Student(Recorder(s, "student", calls), domain),
            Customer(Recorder(c, "customer", calls), domain),
            seed=100,
            max_turns=turns,
        )
        assert d.error is None, d.error
        await s.aclose()
        await c.aclose()

    asyncio.run(go())
    return calls


def replay(calls: list[tuple[str, list[Message], Sampling]], reuse: bool) -> tuple[float, int, int]:
    """Wall time, prompt tokens and generated tokens of the recorded calls on fresh models."""

    async def go() -> tuple[float, int, int]:
        models = {"student": EmbeddedModel(reuse_kv=reuse), "customer": EmbeddedModel(reuse_kv=reuse)}
        for m in models.values():
            m.count_tokens("warm")  # loads the model: loading is not what is compared
        start, prompt, generated = time.perf_counter(), 0, 0
        for role, messages, sampling in calls:
            c = await models[role].complete(messages, sampling)
            prompt += c.prompt_tokens
            generated += c.completion_tokens
        elapsed = time.perf_counter() - start
        for m in models.values():
            await m.aclose()
        return elapsed, prompt, generated

    return asyncio.run(go())


def dialogue_time(turns: int, repeats: int) -> dict[str, Any]:
    calls = record_dialogue(turns)  # also the warm-up
    ratios, rows = [], []
    for i in range(repeats):
        if i % 2 == 0:
            with_reuse, without = replay(calls, True), replay(calls, False)
        else:
            without, with_reuse = replay(calls, False), replay(calls, True)
        ratios.append(with_reuse[0] / without[0])
        rows.append(
            {
                "with_reuse_s": round(with_reuse[0], 2),
                "without_s": round(without[0], 2),
                "prompt_tokens": with_reuse[1],
                "generated_tokens": [with_reuse[2], without[2]],
            }
        )
    return {
        "turns": turns,
        "calls": len(calls),
        "repeats": rows,
        "ratio": spread(ratios),
        "target": 0.7,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = {
        "throughput": throughput(args.prompts, args.repeats),
        "dialogue": dialogue_time(args.turns, args.repeats),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(machine())
    t = StatsTable()
    t.add_stats("embedded throughput, adapter / raw", out["throughput"]["ratio"], ">= 0.95")
    t.add_stats("6-turn dialogue time, reuse / no reuse", out["dialogue"]["ratio"], "<= 0.7")
    print(t.render())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
