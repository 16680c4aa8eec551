"""``serve --capture`` under load: 200 concurrent conversations, none lost, no response waiting
for the database.

Run:  .venv/bin/python benchmarks/bench_capture.py [--requests 200] [--repeats 3] [--upstream-ms 50]

The real app (``create_app``) is served by uvicorn on 127.0.0.1 with a scripted upstream that
answers after ``--upstream-ms`` (an LLM's latency, without its CPU), over a SQLite library of
the Northwind strategies. Each repeat sends ``--requests`` requests at once (httpx, one
conversation of two turns per pair of requests: the second request carries the first answer), with
capture off, then on, and then on while another connection holds SQLite's write lock for the
whole burst (every database write must wait). Reported: response latency p50/p99 per mode, the
time ``record()`` takes on the request path (max), and after the server has shut down, how many
conversations are stored against how many were sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn

from benchmarks.common import northwind, spread
from strategist.core.dialogue import StrategyText
from strategist.models import FunctionModel
from strategist.runtime import StrategyLibrary
from strategist.runtime.capture import TrafficRecorder
from strategist.server import create_app
from strategist.store import Store

TOPICS = [
    ("A customer asks for a card refund more than 30 days after delivery", "Explain the 31-60 day rule."),
    ("A customer wants boots or a jacket in another size", "Offer the one free size exchange."),
    ("A customer asks when a back-ordered tent will ship", "Quote the estimated window; no promise."),
    ("A customer reports an item that arrived damaged", "Ask for a photo, then offer a replacement."),
]


def _library(path: Path) -> None:
    store = Store.open(path)
    domain = northwind()
    store.upsert_domain(domain)
    for trigger, guidance in TOPICS:
        store.add_strategy(
            domain.id,
            StrategyText(trigger=trigger, guidance=guidance),
            provenance={},
            evidence={},
            author="b",
            status="approved",
        )
    store.close()


class Served:
    """The app on a free loopback port, in a thread; ``stop()`` runs its shutdown (capture flushed)."""

    def __init__(self, path: Path, capture: bool, upstream_ms: float) -> None:
        async def upstream(messages: Any, sampling: Any) -> str:
            await asyncio.sleep(upstream_ms / 1000)
            return "Thanks, could you give me the order number and the email on the order?"

        self.library = StrategyLibrary.open(path, domain="northwind")
        self.recorder = TrafficRecorder(self.library.store, "northwind") if capture else None
        self.record_s: list[float] = []
        if self.recorder is not None:
            real = self.recorder.record

            def timed(*a: Any, **k: Any) -> None:
                t = time.perf_counter()
                real(*a, **k)
                self.record_s.append(time.perf_counter() - t)

            self.recorder.record = timed  # type: ignore[method-assign]
        app = create_app(
            self.library, FunctionModel(upstream, name="bench/upstream"), "northwind", capture=self.recorder
        )
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", backlog=2048)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.library.close()


async def burst(url: str, n: int) -> list[float]:
    """``n`` requests at once: n/2 conversations of two turns (the second request carries the answer)."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(i: int) -> None:
            history = [
                {"role": "user", "content": f"My boots came 40 days ago, refund to my card? (customer {i})"}
            ]
            for turn in range(2):
                t = time.perf_counter()
                r = await client.post("/v1/chat/completions", json={"model": "m", "messages": history})
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()
                history += [
                    r.json()["choices"][0]["message"],
                    {"role": "user", "content": f"NW-{i:05d} (turn {turn})"},
                ]

        await asyncio.gather(*(one(i) for i in range(n // 2)))
    return latencies


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_mode(mode: str, n: int, upstream_ms: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    path = folder / "lib.db"
    _library(path)
    served = Served(path, capture=mode != "off", upstream_ms=upstream_ms)
    lock: sqlite3.Connection | None = None
    if mode == "on, database locked":
        lock = sqlite3.connect(path, timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # holds the write lock: every write waits until the commit
    try:
        start = time.perf_counter()
        latencies = asyncio.run(burst(served.url, n))
        wall = time.perf_counter() - start
        written_during = served.recorder.written if served.recorder else 0
    finally:
        if lock is not None:
            lock.execute("COMMIT")
            lock.close()
        served.stop()
    stored = sqlite3.connect(path).execute("SELECT count(*) FROM conversations").fetchone()[0]
    out = {
        "mode": mode,
        "requests": len(latencies),
        "conversations_sent": n // 2 if mode != "off" else 0,
        "conversations_stored": stored,
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * _pct(latencies, 0.99), 2),
        "max_ms": round(1000 * max(latencies), 2),
        "wall_s": round(wall, 3),
        "written_during_burst": written_during,
    }
    if served.recorder is not None:
        out["record_max_us"] = round(1e6 * max(served.record_s), 1)
        out["record_p50_us"] = round(1e6 * statistics.median(served.record_s), 1)
        out["batches"] = served.recorder.batches
        out["writer_errors"] = len(served.recorder.errors)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--upstream-ms", type=float, default=50.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    modes = ["off", "on", "on, database locked"]
    runs: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        for mode in modes:  # alternating modes within each repeat: the machine is noisy
            runs.append(run_mode(mode, args.requests, args.upstream_ms))
    summary = []
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        summary.append(
            {
                "mode": mode,
                "p50_ms": statistics.median(r["p50_ms"] for r in mine),
                "p99_ms": statistics.median(r["p99_ms"] for r in mine),
                "lost": sum(r["conversations_sent"] - r["conversations_stored"] for r in mine),
                "record_max_us": max((r.get("record_max_us", 0.0) for r in mine), default=0.0),
            }
        )
    # Per repeat: p99 latency with capture (and with the database locked) over p99 without.
    off = [r["p99_ms"] for r in runs if r["mode"] == "off"]
    ratios = {
        mode: spread(
            [r["p99_ms"] / o for r, o in zip([r for r in runs if r["mode"] == mode], off, strict=True)]
        )
        for mode in modes[1:]
    }
    lost = sum(r["conversations_sent"] - r["conversations_stored"] for r in runs)
    result = {
        "requests": args.requests,
        "upstream_ms": args.upstream_ms,
        "runs": runs,
        "summary": summary,
        "p99_ratio": ratios,
        "lost": lost,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.requests} concurrent requests ({args.requests // 2} two-turn conversations), "
        f"upstream {args.upstream_ms:g} ms"
    )
    print(f"{'mode':<22} {'p50 ms':>8} {'p99 ms':>8} {'lost':>5} {'record() max us':>16}")
    for s in summary:
        print(
            f"{s['mode']:<22} {s['p50_ms']:>8.1f} {s['p99_ms']:>8.1f} {s['lost']:>5} "
            f"{s['record_max_us']:>16.1f}"
        )
    for r in runs:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
