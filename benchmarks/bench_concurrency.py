"""Concurrency efficiency and CPU per call: many dialogues against a slow OpenAI-compatible server.

Run:  .venv/bin/python benchmarks/bench_concurrency.py [--concurrency 64,256] [--delay 0.2]
      [--turns 6] [--repeats 3] [--clients strategist,aiohttp,openai,litellm] [--profile FILE] [--json]

A loopback OpenAI-compatible server (a bare asyncio HTTP/1.1 server with keep-alive, in its own
process, so it neither competes with the client for the interpreter nor costs much CPU of its own)
answers every chat completion after ``--delay`` seconds. At each level N, N dialogues (at least
64) of T agent turns run N at once: a chain of 2T-1 calls each (the customer's opening line is
scripted), ideal wall time ceil(dialogues / N) * (2T-1) * delay, efficiency = ideal / actual.

Clients, each on the same requests, in one process each time, their order alternating by repeat:

- **strategist**: a grow run's dialogue stage as the run does it (``Runner._simulate``: prompts
  rendered per call, student and customer ``openai/`` models through the native adapter, every
  call through the ledger with its budget check and the response cache, ledger rows and cached
  responses written in batches, each dialogue stored as it ends, in a SQLite file);
- **aiohttp**: the same request bodies from a bare aiohttp session (one JSON dump and load a call);
- **openai**: the official SDK over its aiohttp transport (``DefaultAioHttpClient``), no retries;
- **litellm**: ``litellm.acompletion`` with the arguments litellm's adapter would send.

CPU per call = the client process's CPU time (``time.process_time()``, every thread) over the
run, divided by its calls: what one call costs the machine, whatever the wait.
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

CLIENTS = ("strategist", "aiohttp", "openai", "litellm")


# -- the slow provider -----------------------------------------------------------------------
def serve(port: int, delay: float) -> None:
    """HTTP/1.1 with keep-alive on a bare asyncio protocol: a few tens of microseconds of CPU per
    request, so that at hundreds of requests in flight the server is never what is measured."""

    counter = {"n": 0}

    def answer(n: int) -> bytes:
        payload = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "slow",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"Reply {n}: I can help with that order."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 200, "completion_tokens": 10, "total_tokens": 210},
        }
        body = json.dumps(payload).encode()
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        return head.encode() + body

    class Handler(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buffer[:end].decode("latin-1")
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length :]
                counter["n"] += 1
                loop.call_later(delay, self.reply, counter["n"])

        def reply(self, n: int) -> None:
            if not self.transport.is_closing():
                self.transport.write(answer(n))

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Handler, "127.0.0.1", port, backlog=4096))
    try:
        loop.run_forever()
    finally:
        server.close()


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


# -- strategist: a grow run's dialogue stage ---------------------------------------------------
Requests = list[list[dict[str, Any]]]  # per dialogue, the request body of each call in order


class _Settings:
    def __init__(self, concurrency: int, turns: int) -> None:
        from strategist.engine.ledger import Budget

        self.budget = Budget()
        self.cache = True
        self.concurrency = concurrency
        self.max_turns = turns
        self.max_tool_steps = None


async def dialogue_stage(
    api_base: str, db: Path, dialogues: int, turns: int, concurrency: int, record: bool = True
) -> tuple[float, float, int, Requests]:
    """Wall time, CPU time and calls of the dialogue stage, and every request it sent."""
    from strategist.engine.runner import Runner
    from strategist.models.openai_compat import OpenAICompatModel
    from strategist.store import Store

    store = Store.open(db)
    domain = northwind()
    store.upsert_domain(domain)
    scenario = store.add_scenario(late_refund(domain))
    run_id = store.start_run(domain.id, "bench", {})
    sent: list[tuple[Any, Any, str]] = []

    class Recording(OpenAICompatModel):
        def _body(self, messages: Any, s: Any, tools: Any, stream: bool) -> bytes:
            if record:
                sent.append((messages, s, self.model_id))
            return super()._body(messages, s, tools, stream)

    student = Recording("openai/slow-student", api_base=api_base)
    customer = Recording("openai/slow-customer", api_base=api_base)
    runner = Runner(
        store,
        domain,
        run_id,
        student=student,
        customer=customer,
        judge=customer,
        settings=_Settings(concurrency, turns),
        tools=None,
    )

    async def one(i: int) -> None:
        d = await runner._simulate(
            scenario, seed=i, sample=i, condition="baseline", strategies=(), round_no=1
        )
        assert d.error is None, d.error

    cpu, start = time.process_time(), time.perf_counter()
    await runner._all([one(i) for i in range(dialogues)])
    runner.ledger.flush()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    calls = runner.ledger.calls
    assert runner.ledger.cache_hits == 0
    await student.aclose()
    await customer.aclose()
    store.close()
    by_seed: dict[int, list[dict[str, Any]]] = {}
    if record:
        from strategist.core.seeds import derive_seed
        from strategist.models.base import normalise_messages

        owner = {
            derive_seed(i, role, k): i
            for i in range(dialogues)
            for role in ("student", "customer")
            for k in range(turns)
        }
        for messages, s, model_id in sent:
            body = {
                "model": model_id,
                "messages": normalise_messages(messages),
                "temperature": s.temperature,
                "max_tokens": s.max_tokens,
                "seed": s.seed,
            }
            by_seed.setdefault(owner[s.seed], []).append(body)
    return elapsed, cpu, calls, [by_seed.get(i, []) for i in range(dialogues)]


# -- the same requests through bare clients --------------------------------------------------------
async def bare_aiohttp(api_base: str, requests: Requests, concurrency: int) -> tuple[float, float]:
    import aiohttp

    limit = asyncio.Semaphore(concurrency)
    url = api_base + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def chain(calls: list[dict[str, Any]]) -> None:
            async with limit:
                for body in calls:
                    async with session.post(url, data=json.dumps(body).encode(), headers=headers) as r:
                        json.loads(await r.read())

        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(chain(c) for c in requests))
        return time.perf_counter() - start, time.process_time() - cpu


async def openai_sdk(api_base: str, requests: Requests, concurrency: int) -> tuple[float, float]:
    from openai import AsyncOpenAI, DefaultAioHttpClient

    limit = asyncio.Semaphore(concurrency)
    async with AsyncOpenAI(
        base_url=api_base, api_key="none", max_retries=0, http_client=DefaultAioHttpClient()
    ) as client:

        async def chain(calls: list[dict[str, Any]]) -> None:
            async with limit:
                for body in calls:
                    await client.chat.completions.create(**body)

        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(chain(c) for c in requests))
        return time.perf_counter() - start, time.process_time() - cpu


async def litellm_alone(api_base: str, requests: Requests, concurrency: int) -> tuple[float, float]:
    from strategist.models.litellm_model import import_litellm

    lt = import_litellm()
    limit = asyncio.Semaphore(concurrency)

    async def chain(calls: list[dict[str, Any]]) -> None:
        async with limit:
            for body in calls:
                await lt.acompletion(
                    **{**body, "model": "openai/" + body["model"]},
                    api_base=api_base,
                    api_key="none",
                    max_retries=0,
                    drop_params=True,
                    timeout=120,
                )

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(chain(c) for c in requests))
    return time.perf_counter() - start, time.process_time() - cpu


BARE = {"aiohttp": bare_aiohttp, "openai": openai_sdk, "litellm": litellm_alone}


def run(
    turns: int, delay: float, levels: list[int], repeats: int, clients: list[str], min_dialogues: int
) -> dict[str, Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    proc, api_base = start_server(delay)
    chain = 2 * turns - 1
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Warm-up: imports, the first database, the server's connections; each client once.
            _, _, _, warm = asyncio.run(dialogue_stage(api_base, Path(tmp) / "warm.db", 8, 2, max(levels)))
            for name in clients:
                if name != "strategist":
                    asyncio.run(BARE[name](api_base, warm, 8))
            for c in levels:
                dialogues = max(min_dialogues, c)
                ideal = math.ceil(dialogues / c) * chain * delay
                wall: dict[str, list[float]] = {k: [] for k in clients}
                cpu: dict[str, list[float]] = {k: [] for k in clients}
                for i in range(repeats):
                    _, _, _, requests = asyncio.run(
                        dialogue_stage(api_base, Path(tmp) / f"rec-{c}-{i}.db", dialogues, turns, c)
                    )
                    order = clients if i % 2 == 0 else list(reversed(clients))
                    for name in order:
                        if name == "strategist":
                            elapsed, used, calls, _ = asyncio.run(
                                dialogue_stage(
                                    api_base, Path(tmp) / f"run-{c}-{i}.db", dialogues, turns, c, record=False
                                )
                            )
                            assert calls == dialogues * chain, (calls, dialogues * chain)
                        else:
                            elapsed, used = asyncio.run(BARE[name](api_base, requests, c))
                        wall[name].append(elapsed)
                        cpu[name].append(used / (dialogues * chain) * 1000)
                rows.append(
                    {
                        "concurrency": c,
                        "dialogues": dialogues,
                        "calls": dialogues * chain,
                        "ideal_s": round(ideal, 3),
                        "clients": {
                            name: {
                                "wall_s": [round(t, 3) for t in wall[name]],
                                "efficiency": spread([ideal / t for t in wall[name]]),
                                "cpu_ms_per_call": spread(cpu[name]),
                            }
                            for name in clients
                        },
                    }
                )
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "turns": turns,
        "chain": chain,
        "delay_s": delay,
        "repeats": repeats,
        "levels": rows,
        "targets": {"efficiency": {"64": 0.9, "256": 0.8}, "cpu_ms_per_call": 0.5},
    }


def profile(turns: int, delay: float, concurrency: int, path: str) -> None:
    """cProfile of strategist's dialogue stage alone (one run), sorted by own time, into ``path``."""
    import cProfile
    import pstats

    proc, api_base = start_server(delay)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(dialogue_stage(api_base, Path(tmp) / "warm.db", 8, 2, concurrency, record=False))
            prof = cProfile.Profile()
            prof.enable()
            elapsed, cpu, calls, _ = asyncio.run(
                dialogue_stage(api_base, Path(tmp) / "p.db", concurrency, turns, concurrency, record=False)
            )
            prof.disable()
    finally:
        proc.terminate()
        proc.wait(10)
    with open(path, "w") as out:
        out.write(
            f"{calls} calls, {elapsed:.2f} s wall, {cpu / calls * 1000:.3f} ms CPU per call (profiled)\n"
        )
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dialogues", type=int, default=64, help="at least this many dialogues per level")
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--concurrency", default="64,256", help="levels to measure, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--profile", help="write a cProfile of strategist's dialogue stage to this file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.delay)
        return
    levels = [int(x) for x in args.concurrency.split(",")]
    if args.profile:
        profile(args.turns, args.delay, max(levels), args.profile)
        return
    clients = [c for c in args.clients.split(",") if c]
    out = run(args.turns, args.delay, levels, args.repeats, clients, args.dialogues)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(machine())
    t = Table(
        ["in flight", "client", "ideal s", "actual s (median)", "efficiency", "min", "max", "CPU ms/call"]
    )
    for r in out["levels"]:
        for name, m in r["clients"].items():
            e = m["efficiency"]
            t.add(
                r["concurrency"],
                name,
                r["ideal_s"],
                statistics.median(m["wall_s"]),
                e["median"],
                e["min"],
                e["max"],
                m["cpu_ms_per_call"]["median"],
            )
    print(t.render())


if __name__ == "__main__":
    main()
