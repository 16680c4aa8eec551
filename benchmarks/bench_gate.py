"""The gate on a simulation with known truth: how often it accepts a candidate that does not help,
how often it finds one that does, and how many judged pairs (model calls) a decision costs.

Run:  .venv/bin/python benchmarks/bench_gate.py [--candidates 4000] [--runs 1000] [--json]

Truth: each simulated candidate has a true effect on the mean paired score of 0 (useless), -0.1
(harmful), +0.05, +0.1 or +0.2. Each pair's observed value is the effect plus noise drawn from the
real embedded judge (benchmarks/data/judge_noise.json, written by measure_judge.py):

- score: the score differences between two dialogues of the same scenario with no strategy on
  either side (every pair of its seeds), as the embedded judge scored them, with a random sign
  (two such dialogues are exchangeable); the effect is added and the value clipped to [-1, 1];
- pairwise: the embedded pairwise judge's preference on such null pairs (both orders), with a
  random sign, plus the effect times the judge's measured sensitivity (the least-squares slope of
  its preference on the score difference over the same pairs), clipped to [-1, 1].

Gates, side by side, at the demo's settings (one target scenario, 3 seeds a batch):
- fixed (the old gate): one batch of 3 pairs, percentile bootstrap 95% interval above 0, no
  correction for the candidates of a run;
- sequential: strategist's gate (core.gate.decide_look) at its defaults: batches of 3 up to 24
  seeds, Pocock-type alpha spending, Bonferroni over a run of 20 candidates; futility once the
  upper bound is below threshold + min_gain, or once a looser upper bound (futility_beta spent
  over the looks) is below threshold + effect (+0.1);
- fixed at equal power: one batch of n pairs, a one-sided t-test at the sequential gate's per
  candidate level, with n the smallest that reaches the sequential gate's power at +0.1.

A run is 20 candidates with effects drawn uniformly from the five values; its false acceptance is
that it accepts at least one candidate whose effect is 0 or negative.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from scipy import stats

from strategist.core.gate import GateConfig, decide, decide_look

NOISE = Path(__file__).resolve().parent / "data" / "judge_noise.json"
EFFECTS = (-0.1, 0.0, 0.05, 0.1, 0.2)
RUN_SIZE = 20
# Judge calls per pair with one agent turn: per side a verdict and a rating; the pairwise judge
# adds one call per order.
CALLS = {"score": 4, "pairwise": 6, "both": 6}


def load_noise(path: Path = NOISE) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    by_scenario: dict[str, list[float]] = {}
    for row in data["scores"]:
        if row["score"] is not None:
            by_scenario.setdefault(row["scenario"], []).append(row["score"])
    score_null = [a - b for v in by_scenario.values() for i, a in enumerate(v) for b in v[i + 1 :]]
    pairs = [p for p in data["null_pairs"] if p["preference"] is not None]
    pref = np.array([p["preference"] for p in pairs], dtype=float)
    sdelta = np.array([p["score_delta"] for p in pairs], dtype=float)
    slope = float(sdelta @ pref / (sdelta @ sdelta)) if len(pairs) and sdelta @ sdelta > 0 else 0.0
    return {
        "score": np.array(score_null, dtype=float),
        "pairwise": pref - slope * sdelta if len(pairs) else np.zeros(1),
        "slope": slope,
        "measured": data,
    }


class Simulator:
    def __init__(self, noise: dict[str, Any], rng: np.random.Generator) -> None:
        self.noise = noise
        self.rng = rng

    def draw(self, effect: float, n: int) -> dict[str, np.ndarray]:
        out = {}
        for signal, shift in (("score", effect), ("pairwise", effect * self.noise["slope"])):
            base = self.rng.choice(self.noise[signal], size=n) * self.rng.choice([-1.0, 1.0], size=n)
            out[signal] = np.clip(base + shift, -1.0, 1.0)
        return out


def sequential(sim: Simulator, effect: float, cfg: GateConfig) -> tuple[bool, int]:
    values: dict[str, list[float]] = {"score": [], "pairwise": []}
    previous = 0.0
    most = cfg.cap
    for b in range(cfg.batches):
        batch = sim.draw(effect, cfg.samples)
        for k in values:
            values[k] += batch[k].tolist()
        final = b == cfg.batches - 1
        fraction = len(values["score"]) / most
        d = decide_look(values, {}, cfg, fraction=fraction, previous_fraction=previous, final=final)
        previous = fraction
        if d.verdict != "continue":
            return d.verdict == "accept", len(values["score"])
    raise AssertionError("the last batch always decides")


def fixed_old(sim: Simulator, effect: float, n: int, seed: int) -> bool:
    deltas = sim.draw(effect, n)["score"].tolist()
    return decide(deltas, [], GateConfig(samples=n, resamples=400), seed=seed).accepted


def fixed_t(sim: Simulator, effect: float, n: int, alpha: float, signal: str) -> bool:
    d = sim.draw(effect, n)
    accepted = True
    for s in ("score", "pairwise") if signal == "both" else (signal,):
        x = d[s]
        sd = float(x.std(ddof=1))
        if sd == 0:
            accepted &= bool(x.mean() > 0)
            continue
        t = float(x.mean()) / (sd / np.sqrt(n))
        accepted &= bool(t > stats.t.ppf(1 - alpha, n - 1))
    return accepted


def rates(fn: Any, candidates: int) -> dict[str, Any]:
    out = {}
    for effect in EFFECTS:
        results = [fn(effect) for _ in range(candidates)]
        accepted = [r[0] if isinstance(r, tuple) else r for r in results]
        pairs = [r[1] for r in results if isinstance(r, tuple)]
        out[f"{effect:+.2f}"] = {
            "accept": float(np.mean(accepted)),
            "pairs": float(np.mean(pairs)) if pairs else None,
        }
    return out


def per_run(fn: Any, runs: int, rng: np.random.Generator) -> float:
    bad = 0
    for _ in range(runs):
        effects = rng.choice(EFFECTS, size=RUN_SIZE)
        bad += any(fn(float(e)) for e in effects if e <= 0)
    return bad / runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", type=int, default=4000, help="Simulated candidates per effect.")
    p.add_argument("--runs", type=int, default=1000, help="Simulated runs of 20 candidates.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=Path, default=NOISE, help="What measure_judge.py wrote.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    noise = load_noise(args.noise)
    sim = Simulator(noise, rng)
    base = GateConfig(samples=3, variants=0, regression=0, family=RUN_SIZE)
    old_n = 3
    result: dict[str, Any] = {
        "noise": {
            "score_null_sd": float(noise["score"].std()),
            "score_null_pairs": int(noise["score"].size),
            "pairwise_null_sd": float(noise["pairwise"].std()),
            "pairwise_slope": noise["slope"],
            "pairwise_null_pairs": int(noise["pairwise"].size),
            "judge_unjudged_before": (noise["measured"].get("old") or {}).get("rate"),
            "judge_unjudged_after": noise["measured"]["new"]["rate"],
            "judge_partial_after": noise["measured"]["new"]["partial"] / noise["measured"]["dialogues"],
            "dialogues": noise["measured"]["dialogues"],
        },
        "settings": {
            "samples": base.samples,
            "max_samples": base.cap,
            "run_size": RUN_SIZE,
            "alpha": base.alpha,
            "effect": base.effect,
            "futility_beta": base.futility_beta,
        },
        "gates": {},
    }
    counter = iter(range(10**9))
    result["gates"]["fixed (old)"] = {
        "signal": "score",
        "rates": rates(lambda e: (fixed_old(sim, e, old_n, next(counter)), old_n), args.candidates),
        "per_run": per_run(lambda e: fixed_old(sim, e, old_n, next(counter)), args.runs, rng),
        "calls_per_pair": CALLS["score"],
    }
    for signal in ("score", "pairwise", "both"):
        cfg = replace(base, signal=signal)  # type: ignore[arg-type]
        seq = rates(lambda e, c=cfg: sequential(sim, e, c), args.candidates)
        result["gates"][f"sequential {signal}"] = {
            "signal": signal,
            "rates": seq,
            "per_run": per_run(lambda e, c=cfg: sequential(sim, e, c)[0], args.runs, rng),
            "calls_per_pair": CALLS[signal],
        }
        # The fixed-sample t-test at the same level that matches the sequential gate's power at +0.1.
        target = seq["+0.10"]["accept"]
        n_eq = None
        for n in range(3, 61):
            power = np.mean([fixed_t(sim, 0.1, n, cfg.alpha, signal) for _ in range(800)])
            if power >= target:
                n_eq = n
                break
        if n_eq is not None:

            def fixed(e: float, n: int = n_eq, s: str = signal, a: float = cfg.alpha) -> bool:
                return fixed_t(sim, e, n, a, s)

            result["gates"][f"fixed {signal}, equal power (n={n_eq})"] = {
                "signal": signal,
                "rates": rates(lambda e, n=n_eq, f=fixed: (f(e), n), args.candidates),
                "per_run": per_run(fixed, args.runs, rng),
                "calls_per_pair": CALLS[signal],
            }
    if args.json:
        print(json.dumps(result))
    else:
        print(render(result))


def render(result: dict[str, Any]) -> str:
    n = result["noise"]
    lines = [
        f"noise from {n['dialogues']} stored embedded dialogues: score null sd {n['score_null_sd']:.3f} "
        f"({n['score_null_pairs']} pairs), pairwise null sd {n['pairwise_null_sd']:.3f} "
        f"({n['pairwise_null_pairs']} pairs), pairwise slope on score {n['pairwise_slope']:+.2f}",
        "judge unjudgeable: before "
        + ("n/a" if n["judge_unjudged_before"] is None else f"{n['judge_unjudged_before']:.0%}")
        + f", after {n['judge_unjudged_after']:.0%} (checks + rating only: {n['judge_partial_after']:.0%})",
        "",
        f"{'gate':36} {'FA@0':>6} {'FA@-.1':>6} {'FA/run':>6} {'P@.05':>6} {'P@.1':>6} {'P@.2':>6} "
        f"{'pairs':>6} {'calls':>6}",
    ]
    for name, g in result["gates"].items():
        r = g["rates"]
        pairs = np.mean([v["pairs"] for v in r.values()])
        lines.append(
            f"{name:36} {r['+0.00']['accept']:6.3f} {r['-0.10']['accept']:6.3f} {g['per_run']:6.3f} "
            f"{r['+0.05']['accept']:6.3f} {r['+0.10']['accept']:6.3f} {r['+0.20']['accept']:6.3f} "
            f"{pairs:6.1f} {pairs * g['calls_per_pair']:6.1f}"
        )
    lines.append(
        "FA: false acceptance (per candidate at effect 0 / -0.1; per run of 20); P: power; pairs and"
    )
    lines.append("calls: mean judged pairs and judge calls per decision over the five effects.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
