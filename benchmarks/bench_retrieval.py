"""Retrieval latency and prompt overhead at 1k, 10k and 100k approved strategies.

Run:  .venv/bin/python benchmarks/bench_retrieval.py [--sizes 1000,10000,100000] [--queries 1000]
      [--python-ranker]   (also time the pure-Python BM25 used on databases without FTS5)

Builds synthetic libraries (SQLite files in a temporary folder, through the real migrations and
FTS5 triggers; the index is then merged as ``StrategyLibrary.open`` does), then times
``StrategyLibrary.retrieve`` (k=3, budget 300 tokens, usage counters on) for synthetic
three-message conversations. The text is generated to look like support strategies: twenty
policy topics whose words recur across many strategies, 400 products, and a long
Zipf-distributed tail of rarer words. "Injected tokens" is what the strategies add to the
student's system prompt: tokens of the prompt with them minus without them, counted with the
embedded model's tokenizer (SmolLM2) when it is installed, else estimated at 4 characters a token.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import northwind
from strategist.core.domain import Domain
from strategist.runtime import StrategyLibrary
from strategist.runtime.rankers import PythonRanker
from strategist.runtime.retrieval import TokenCounter, estimate_tokens
from strategist.store import Store
from strategist.store.tables import utcnow

TOPICS = [
    "refund card payment money back original method",
    "return label prepaid warehouse unworn tags",
    "exchange size swap fit smaller larger",
    "price drop adjustment difference cheaper website",
    "discount code coupon promo voucher apology",
    "shipping delivery tracking courier parcel late",
    "backorder estimate window stock cancel date",
    "damaged broken torn photo replacement claim",
    "final sale clearance nonrefundable exception",
    "store credit balance gift digital expires",
    "supervisor manager escalate complaint email",
    "privacy account spouse family information",
    "verify identity email order number match",
    "warranty defect repair zipper seam stitching",
    "loyalty member points rewards years",
    "address change reroute redirect shipment",
    "invoice receipt tax vat business",
    "international customs duties abroad",
    "gift wrap message recipient surprise",
    "subscription renewal billing charge twice",
]
MOODS = ["angry", "impatient", "calm", "confused", "polite", "frustrated", "worried", "rude"]
VERBS = ["asks about", "demands", "complains about", "wants", "requests", "insists on", "mentions"]
ACTIONS = ["Explain", "Acknowledge", "Offer", "Confirm", "Check", "Never promise", "Say clearly", "Ask for"]
_SYLLABLES = "ka lo mi ne ru ta vo zi pe sa do ri gu fe ha ju ko li mu no pa qu re si tu ve wa xo yu ze"
SYLLABLES = _SYLLABLES.split()


class Synth:
    """Deterministic synthetic strategies and conversations."""

    def __init__(self, seed: int = 7, tail: int = 8000, products: int = 400) -> None:
        self.rng = random.Random(seed)
        self.topics = [t.split() for t in TOPICS]
        self.tail = sorted({self._word(3) for _ in range(tail)})
        self.rng.shuffle(self.tail)
        self.tail_weights = [1 / (i + 1) ** 1.1 for i in range(len(self.tail))]  # Zipf
        self.products = [
            f"{self._word(2)} {self.rng.choice(['jacket', 'boots', 'tent', 'bag', 'fleece'])}"
            for _ in range(products)
        ]

    def _word(self, n: int) -> str:
        return "".join(self.rng.choice(SYLLABLES) for _ in range(n))

    def _tail(self, n: int) -> list[str]:
        return self.rng.choices(self.tail, weights=self.tail_weights, k=n)

    def strategy(self) -> tuple[str, str, str]:
        r = self.rng
        topic = r.choice(self.topics)
        other = r.choice(self.topics)
        trigger = (
            f"When a {r.choice(MOODS)} customer {r.choice(VERBS)} {' '.join(r.sample(topic, 3))} "
            f"for the {r.choice(self.products)} {' '.join(self._tail(2))}"
        )
        guidance = (
            f"{r.choice(ACTIONS)} the {' '.join(r.sample(topic, 3))} rule, "
            f"mention {' '.join(r.sample(other, 2))} "
            f"and {' '.join(self._tail(4))}; stay polite."
        )
        example = f"I understand, let me check the {r.choice(topic)} options for you."
        return trigger, guidance, example

    def conversation(self) -> list[dict[str, str]]:
        r = self.rng
        topic = r.choice(self.topics)
        return [
            {
                "role": "user",
                "content": f"Hi, I have a question about my order of the {r.choice(self.products)}.",
            },
            {"role": "assistant", "content": "Sure, could you give me the order number and email, please?"},
            {
                "role": "user",
                "content": f"It is NW-{r.randint(10000, 99999)}. I want {' '.join(r.sample(topic, 2))}, "
                f"the {' '.join(self._tail(2))} thing, it's been {r.randint(2, 90)} days!",
            },
        ]


def build(path: Path, n: int, synth: Synth, domain: Domain) -> Store:
    store = Store.open(path)
    store.upsert_domain(domain)
    now = utcnow()
    table = sa.table(
        "strategies",
        *(
            sa.column(c)
            for c in (
                "domain_id",
                "trigger",
                "guidance",
                "example",
                "status",
                "version",
                "provenance",
                "evidence",
                "times_retrieved",
                "created_at",
                "updated_at",
            )
        ),
    )
    batch: list[dict[str, Any]] = []
    with store.engine.begin() as conn:
        for _ in range(n):
            trigger, guidance, example = synth.strategy()
            batch.append(
                {
                    "domain_id": domain.id,
                    "trigger": trigger,
                    "guidance": guidance,
                    "example": example,
                    "status": "approved",
                    "version": 1,
                    "provenance": "{}",
                    "evidence": "{}",
                    "times_retrieved": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if len(batch) == 5000:
                conn.execute(table.insert(), batch)
                batch.clear()
        if batch:
            conn.execute(table.insert(), batch)
    return store


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def token_counter() -> tuple[TokenCounter, str]:
    try:
        from strategist.models.embedded import EmbeddedModel

        model = EmbeddedModel()
        model.count_tokens("warm up")
    except Exception:
        return estimate_tokens, "estimate (4 chars/token)"

    def count(text: str) -> int:
        return model.count_tokens(text) or 0

    return count, "SmolLM2 tokenizer"


def measure(
    library: StrategyLibrary, conversations: list[list[dict[str, str]]], warmup: int = 50
) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds of each retrieve(); CPU time is what other processes on a
    shared machine cannot inflate."""
    for c in conversations[:warmup]:
        library.retrieve(c)
    wall, cpu = [], []
    for c in conversations:
        start, start_cpu = time.perf_counter(), time.thread_time()
        library.retrieve(c)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    return wall, cpu


def run(
    sizes: list[int], queries: int, python_ranker: bool, progress: bool = True
) -> tuple[list[dict[str, Any]], str]:
    domain = northwind()
    count, counter_name = token_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            synth = Synth()
            t0 = time.perf_counter()
            store = build(Path(tmp) / f"lib{n}.db", n, synth, domain)
            build_s = time.perf_counter() - t0
            conversations = [synth.conversation() for _ in range(queries)]
            library = StrategyLibrary(store, domain=domain.id, k=3, budget=300, token_counter=count)
            library.optimize()  # what StrategyLibrary.open() does
            times, cpu = measure(library, conversations)
            base = count(library.system_prompt([]))
            overhead, injected = [], []
            for c in conversations[:200]:
                found = library.retrieve(c)
                injected.append(len(found.strategies))
                overhead.append(count(library.system_prompt(found)) - base)
            row = {
                "n": n,
                "build_s": build_s,
                "p50": statistics.median(times),
                "p99": percentile(times, 99),
                "cpu_p99": percentile(cpu, 99),
                "strategies": statistics.mean(injected),
                "tokens": statistics.mean(overhead),
            }
            if python_ranker:
                fallback = StrategyLibrary(
                    store, domain=domain.id, k=3, budget=300, token_counter=count, ranker=PythonRanker(store)
                )
                t0 = time.perf_counter()
                fallback.retrieve(conversations[0])  # builds its in-memory index
                row["py_build"] = time.perf_counter() - t0
                ftimes, _ = measure(fallback, conversations)
                row["py_p50"], row["py_p99"] = statistics.median(ftimes), percentile(ftimes, 99)
            library.close()
            store.close()
            rows.append(row)
            if progress:
                print(f"  built and measured {n} strategies (build {build_s:.1f} s)", flush=True)
    return rows, counter_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="library sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=1000, help="timed retrievals per size")
    parser.add_argument("--python-ranker", action="store_true", help="also time the non-FTS5 fallback")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows, counter_name = run(sizes, args.queries, args.python_ranker, progress=not args.json)
    if args.json:
        print(
            json.dumps({"queries": args.queries, "tokens_counted_with": counter_name, "rows": rows}, indent=2)
        )
        return
    print()
    print(
        f"retrieve(): k=3, budget=300 tokens, {args.queries} conversations per size; tokens: {counter_name}"
    )
    head = (
        "| strategies | p50 ms | p99 ms | target p99 | p99 CPU ms | strategies injected | injected tokens |"
    )
    if args.python_ranker:
        head += " fallback p50 ms | fallback p99 ms | fallback index build s |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    targets = {10_000: "<= 2", 100_000: "<= 10"}
    for r in rows:
        line = (
            f"| {r['n']:,} | {r['p50']:.2f} | {r['p99']:.2f} | {targets.get(r['n'], '')} | "
            f"{r['cpu_p99']:.2f} | {r['strategies']:.2f} | {r['tokens']:.0f} |"
        )
        if args.python_ranker:
            line += f" {r['py_p50']:.2f} | {r['py_p99']:.2f} | {r['py_build']:.1f} |"
        print(line)


if __name__ == "__main__":
    main()
