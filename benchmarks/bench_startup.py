"""Start-up: wall time of ``strategist --help`` in a new process.

Run:  .venv/bin/python benchmarks/bench_startup.py [--repeats 10] [--json]

Each repeat starts the installed console script afresh (the interpreter, the package, the CLI
tree); ``python -c pass`` is timed the same way to show what the interpreter alone costs here.
Heavy libraries (litellm, llama-cpp-python, SQLModel) must not load for ``--help``; the benchmark
checks that too.
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

from benchmarks.common import StatsTable, machine, spread

BIN = Path(sys.executable).parent


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_imports() -> list[str]:
    """Heavy modules loaded by the CLI's --help path (should be none)."""
    code = (
        "import sys; from typer.testing import CliRunner; from strategist.cli import app;"
        "CliRunner().invoke(app, ['--help']);"
        "heavy = ('litellm', 'llama_cpp', 'sqlmodel', 'matplotlib', 'aiohttp');"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return [m for m in out.strip().split(",") if m]


def run(repeats: int) -> dict[str, Any]:
    cli = [str(BIN / "strategist"), "--help"]
    bare = [sys.executable, "-c", "pass"]
    timed(cli)  # warm-up: the page cache holds the files afterwards
    timed(bare)
    help_s = [timed(cli) for _ in range(repeats)]
    bare_s = [timed(bare) for _ in range(repeats)]
    return {
        "repeats": repeats,
        "help_s": spread(help_s),
        "python_bare_s": spread(bare_s)["median"],
        "heavy_imports": heavy_imports(),
        "target_s": 0.5,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = run(args.repeats)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(machine())
    t = StatsTable()
    t.add_stats("strategist --help, s", out["help_s"], "<= 0.5")
    print(t.render())
    print(f"python -c pass: {out['python_bare_s']:.3f} s; heavy imports: {out['heavy_imports'] or 'none'}")


if __name__ == "__main__":
    main()
