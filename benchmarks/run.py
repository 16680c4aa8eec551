"""Every benchmark, one table: ``make bench`` (or ``.venv/bin/python benchmarks/run.py``).

Each benchmark runs in its own process (``bench_*.py --json``) so that one's imports, threads and
memory do not colour the next; the combined table is printed and everything measured is written
to benchmarks/results.json. ``--only NAME,...`` runs a subset; ``--quick`` uses fewer repeats and
smaller sizes (for trying the command, not for numbers worth quoting).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import StatsTable, Table, fmt, machine, machine_info

HERE = Path(__file__).resolve().parent
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    # name: (full arguments, --quick arguments)
    "orchestration": (["--repeats", "5"], ["--repeats", "2"]),
    "concurrency": (
        ["--repeats", "3"],
        ["--repeats", "1", "--concurrency", "16,64", "--clients", "strategist,aiohttp"],
    ),
    "embedded": (["--repeats", "3"], ["--repeats", "1", "--prompts", "2", "--turns", "3"]),
    "startup": (["--repeats", "10"], ["--repeats", "3"]),
    "retrieval": ([], ["--sizes", "1000,10000", "--queries", "300"]),
    "tools": (["--repeats", "5"], ["--repeats", "2", "--dialogues", "10"]),
    "gate": ([], ["--candidates", "300", "--runs", "50"]),
    "capture": (["--repeats", "3"], ["--repeats", "1"]),
}


def run_one(name: str, quick: bool) -> dict[str, Any]:
    full, short = BENCHES[name]
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), *(short if quick else full), "--json"]
    print(f"running {name}: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"  {name} failed: {tail}", flush=True)
        return {"error": tail, "seconds": round(time.perf_counter() - start, 1)}
    out = dict(json.loads(proc.stdout))
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(f"  done in {out['seconds']} s", flush=True)
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    t = StatsTable()
    r = results.get("orchestration", {})
    if "overhead_ms_per_call" in r:
        label = f"orchestration overhead, ms per model call ({r['calls_per_run']} calls)"
        t.add_stats(label, r["overhead_ms_per_call"], "<= 0.1")
    r = results.get("concurrency", {})
    targets = {64: ">= 0.9", 256: ">= 0.8"}
    for level in r.get("levels", []):
        n, clients = level["concurrency"], level["clients"]
        ours = clients.get("strategist")
        if ours is None:
            continue
        others = ", ".join(
            f"{name} {clients[name]['efficiency']['median']:.2f}"
            for name in ("aiohttp", "openai", "litellm")
            if name in clients
        )
        label = (
            f"concurrency efficiency, {level['dialogues']} dialogues x {r['turns']} turns, "
            f"{n} in flight ({others})"
        )
        t.add_stats(label, ours["efficiency"], targets.get(n, ">= 0.9"))
    for level in r.get("levels", []):
        clients = level["clients"]
        ours = clients.get("strategist")
        if ours is None:
            continue
        others = ", ".join(
            f"{name} {clients[name]['cpu_ms_per_call']['median']:.2f}"
            for name in ("aiohttp", "openai", "litellm")
            if name in clients
        )
        label = f"CPU ms per model call, dialogue stage, {level['concurrency']} in flight ({others})"
        t.add_stats(label, ours["cpu_ms_per_call"], "<= 0.5")
    r = results.get("embedded", {})
    if "throughput" in r:
        t.add_stats("embedded throughput, adapter / raw llama-cpp", r["throughput"]["ratio"], ">= 0.95")
        label = f"{r['dialogue']['turns']}-turn embedded dialogue time, KV reuse / none"
        t.add_stats(label, r["dialogue"]["ratio"], "<= 0.7")
    r = results.get("tools", {})
    if "ratio" in r:
        label = f"tool call through strategist / bare mcp client ({r['tool_calls_per_run']} calls)"
        t.add_stats(label, r["ratio"], "<= 1.2")
    r = results.get("capture", {})
    for mode, stats in r.get("p99_ratio", {}).items():
        label = f"serve --capture {mode}, {r['requests']} requests at once: p99 latency / capture off"
        t.add_stats(label, stats, "<= 1.25")
    if "lost" in r:
        t.add_stats(
            "serve --capture: conversations lost", {"median": r["lost"], "min": 0, "max": r["lost"]}, "<= 0"
        )
    r = results.get("startup", {})
    if "help_s" in r:
        t.add_stats("strategist --help, seconds", r["help_s"], "<= 0.5")
    lines = [t.render()]
    r = results.get("retrieval", {})
    if "rows" in r:
        targets = {10_000: 2.0, 100_000: 10.0}
        rt = Table(
            ["strategies", "p50 ms", "p99 ms", "p99 CPU ms", "target p99 ms", "met", "injected tokens"]
        )
        for x in r["rows"]:
            target = targets.get(x["n"])
            met = "" if target is None else ("yes" if x["p99"] <= target else "no")
            rt.add(
                f"{x['n']:,}",
                x["p50"],
                x["p99"],
                x["cpu_p99"],
                fmt(target) if target else "",
                met,
                round(x["tokens"]),
            )
        lines += ["", f"retrieval, {r['queries']} queries per size, k=3, budget 300 tokens:", rt.render()]
    r = results.get("gate", {})
    if "gates" in r:
        from benchmarks.bench_gate import render

        lines += ["", "the gate on a simulation with the embedded judge's noise (bench_gate.py):", render(r)]
    failed = [k for k, v in results.items() if "error" in v]
    if failed:
        lines += ["", "failed: " + "; ".join(f"{k}: {results[k]['error']}" for k in failed)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--table-only", action="store_true", help="print the table of --out without measuring")
    args = ap.parse_args()
    if args.table_only:
        print(table(json.loads(Path(args.out).read_text())["results"]))
        return
    names = args.only.split(",") if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"error: unknown benchmark {unknown[0]!r}; expected one of {', '.join(BENCHES)}")
    info = machine_info()
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        results[name] = run_one(name, args.quick)
        # Written after each benchmark: a later failure loses nothing already measured.
        payload = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "quick": args.quick,
            "machine": info,
            "results": results,
        }
        Path(args.out).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print()
    print(machine())
    print()
    print(table(results))
    print(f"\nwrote {args.out}")
    if any("error" in v for v in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
