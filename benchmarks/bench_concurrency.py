"""Concurrency efficiency: many dialogues against a slow provider, through the real litellm path.

Run:  .venv/bin/python benchmarks/bench_concurrency.py [--dialogues 64] [--turns 6]
      [--delay 0.2] [--concurrency 64] [--repeats 3] [--json]

A loopback OpenAI-compatible server (FastAPI under uvicorn, in its own process so that it does
not compete with the client for the interpreter) answers every chat completion after ``--delay``
seconds. The client side is what a grow run's dialogue stage does: ``simulate()`` for each
dialogue, student and customer through ``LiteLLMModel`` (``openai/...`` with ``api_base``), each
call through the ledger (budget check, a row in a SQLite file) and the response cache, dialogues
stored as they finish, all under the run's ``--concurrency`` limit.

A dialogue of T agent turns is a chain of 2T-1 calls (the customer's opening line is scripted),
so the ideal wall time is ceil(dialogues / concurrency) * (2T-1) * delay, and
efficiency = ideal / actual.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Table, late_refund, machine, northwind, spread


# -- the slow provider -----------------------------------------------------------------------
def serve(port: int, delay: float) -> None:
    """A bare ASGI app under uvicorn: the server must cost far less than the client it measures
    (a FastAPI app here spends more CPU per request than this whole function)."""
    import uvicorn

    counter = {"n": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/models"):
            payload: dict[str, Any] = {"object": "list", "data": [{"id": "slow", "object": "model"}]}
        else:
            model = json.loads(body or b"{}").get("model", "slow")
            await asyncio.sleep(delay)
            counter["n"] += 1
            n = counter["n"]
            payload = {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": f"Reply {n}: I can help with that order.",
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 200, "completion_tokens": 10, "total_tokens": 210},
            }
        data = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", backlog=1024, access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(delay: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--delay", str(delay)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the benchmark server did not start")


# -- the client: a grow run's dialogue stage ---------------------------------------------------
Requests = list[list[dict[str, Any]]]  # per dialogue, the litellm arguments of each call in order


async def dialogue_stage(
    api_base: str, db: Path, dialogues: int, turns: int, concurrency: int
) -> tuple[float, int, Requests]:
    """Wall time and number of calls of the dialogue stage, and every request it sent."""
    from strategist.core.seeds import derive_seed
    from strategist.engine.cache import ResponseCache
    from strategist.engine.concurrency import run_all
    from strategist.engine.ledger import RUN_WRITE_BATCH, Ledger
    from strategist.engine.simulate import simulate
    from strategist.models.litellm_model import LiteLLMModel
    from strategist.roles import Customer, Student
    from strategist.store import Store

    store = Store.open(db)
    domain = northwind()
    store.upsert_domain(domain)
    scenario = store.add_scenario(late_refund(domain))
    run_id = store.start_run(domain.id, "bench", {})
    ledger = Ledger(store, run_id, cache=ResponseCache(store), write_batch=RUN_WRITE_BATCH)
    sent: dict[int, list[dict[str, Any]]] = {}
    # Every call's seed derives from its dialogue's seed (here the dialogue's number).
    owner = {
        derive_seed(i, role, k): i
        for i in range(dialogues)
        for role in ("student", "customer")
        for k in range(turns)
    }

    class Recording(LiteLLMModel):
        async def _call(self, kwargs: dict[str, Any]) -> Any:
            sent.setdefault(owner[kwargs["seed"]], []).append(kwargs)
            return await super()._call(kwargs)

    def model(role: str) -> Any:
        return ledger.wrap(Recording(f"openai/slow-{role}", api_base=api_base), role)

    student, customer = Student(model("student"), domain), Customer(model("customer"), domain)

    async def one(i: int) -> None:
        d = await simulate(scenario, domain, student, customer, seed=i, sample=i, max_turns=turns)
        assert d.error is None, d.error
        store.add_dialogue(d, run_id=run_id, round=1)

    start = time.perf_counter()
    await run_all([one(i) for i in range(dialogues)], asyncio.Semaphore(concurrency))
    elapsed = time.perf_counter() - start
    ledger.flush()
    assert ledger.cache_hits == 0
    store.close()
    return elapsed, ledger.calls, [sent[i] for i in range(dialogues)]


async def litellm_alone(requests: Requests, concurrency: int) -> float:
    """The same requests, dialogue by dialogue in the same order, straight to litellm.acompletion:
    what the provider's client alone costs, for reference."""
    from strategist.models.litellm_model import import_litellm

    lt = import_litellm()
    limit = asyncio.Semaphore(concurrency)

    async def chain(calls: list[dict[str, Any]]) -> None:
        async with limit:
            for kwargs in calls:
                await lt.acompletion(**kwargs)

    start = time.perf_counter()
    await asyncio.gather(*(chain(c) for c in requests))
    return time.perf_counter() - start


def run(dialogues: int, turns: int, delay: float, levels: list[int], repeats: int) -> dict[str, Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    proc, api_base = start_server(delay)
    chain = 2 * turns - 1
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Warm-up: imports litellm, opens its HTTP client and the server's connections.
            asyncio.run(dialogue_stage(api_base, Path(tmp) / "warm.db", min(8, dialogues), 2, max(levels)))
            for c in levels:
                ideal = math.ceil(dialogues / c) * chain * delay
                ours, alone = [], []
                for i in range(repeats):
                    elapsed, calls, requests = asyncio.run(
                        dialogue_stage(api_base, Path(tmp) / f"run-{c}-{i}.db", dialogues, turns, c)
                    )
                    assert calls == dialogues * chain, (calls, dialogues * chain)
                    ours.append(elapsed)
                    alone.append(asyncio.run(litellm_alone(requests, c)))
                rows.append(
                    {
                        "concurrency": c,
                        "ideal_s": round(ideal, 3),
                        "actual_s": [round(t, 3) for t in ours],
                        "efficiency": spread([ideal / t for t in ours]),
                        "litellm_alone_s": [round(t, 3) for t in alone],
                        "litellm_alone_efficiency": spread([ideal / t for t in alone])["median"],
                        "calls_per_s": round(dialogues * chain / statistics.median(ours), 1),
                    }
                )
    finally:
        proc.terminate()
        proc.wait(10)
    met = [r for r in rows if r["efficiency"]["median"] >= 0.9]
    chosen = (
        max(met, key=lambda r: r["concurrency"])
        if met
        else max(rows, key=lambda r: r["efficiency"]["median"])
    )
    return {
        "dialogues": dialogues,
        "turns": turns,
        "calls_per_run": dialogues * chain,
        "delay_s": delay,
        "repeats": repeats,
        "levels": rows,
        "chosen": chosen["concurrency"],
        "efficiency": chosen["efficiency"],
        "target": 0.9,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dialogues", type=int, default=64)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--concurrency", default="8,16,32,64", help="levels to measure, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.delay)
        return
    levels = [int(x) for x in args.concurrency.split(",")]
    out = run(args.dialogues, args.turns, args.delay, levels, args.repeats)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(machine())
    t = Table(
        [
            "concurrency",
            "ideal s",
            "actual s (median)",
            "efficiency",
            "min",
            "max",
            "litellm alone",
            "calls/s",
        ]
    )
    for r in out["levels"]:
        e = r["efficiency"]
        t.add(
            r["concurrency"],
            r["ideal_s"],
            statistics.median(r["actual_s"]),
            e["median"],
            e["min"],
            e["max"],
            r["litellm_alone_efficiency"],
            r["calls_per_s"],
        )
    print(t.render())
    print(f"{out['calls_per_run']} calls per run; chosen concurrency {out['chosen']}")


if __name__ == "__main__":
    main()
