"""The embedded judge on stored embedded dialogues: how often it cannot answer, and how its signals
spread. The gate benchmark (bench_gate.py) draws its noise from what this writes.

Run:  .venv/bin/python benchmarks/measure_judge.py [--scenarios 6] [--seeds 4] [--json]

1. Dialogues: the embedded student (SmolLM2-135M) answers the Northwind training scenarios, one
   agent turn each (as in ``make demo``), for ``--seeds`` customer seeds. They are stored in
   benchmarks/data/embedded_dialogues.json and re-used on later runs (``--new-dialogues`` makes
   them again).
2. The judge's failure rate on those dialogues, before and after the compact answer: "before" asks
   for the answer strategist used to ask for (a reason of up to 100 characters per rubric item and
   a critique of up to 400, 420 tokens at most); "after" is strategist's Judge (one true/false per
   item, a short critique, a token limit that fits, and the fallback to checks and rating).
3. The spread: every dialogue's score, and for pairs of dialogues of the same scenario (different
   seeds, no strategy on either side: a pair where nothing should differ) the score difference and
   the pairwise judge's preference in both orders.

Writes benchmarks/data/judge_noise.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel, Field, create_model

from benchmarks.common import NORTHWIND, machine_info
from strategist.core.dialogue import Dialogue
from strategist.core.evidence import pair_preference
from strategist.errors import ModelError
from strategist.models.base import Sampling
from strategist.packs import load_domain, load_scenario_set
from strategist.prompting import render
from strategist.roles import Customer, Judge, Student
from strategist.structured import complete_structured

DATA = Path(__file__).resolve().parent / "data"
DIALOGUES = DATA / "embedded_dialogues.json"
OUT = DATA / "judge_noise.json"


class _OldRubric(BaseModel):
    passed: bool
    reason: str = Field(default="", max_length=100)


def _old_verdict(n_items: int, n_turns: int) -> type[BaseModel]:
    """The judge's answer as strategist asked for it before the compact format."""
    return create_model(
        "Verdict",
        rubric=(list[_OldRubric], Field(min_length=n_items, max_length=n_items)),
        weakest_turn=(int, Field(ge=1, le=max(1, n_turns))),
        critique=(str, Field(max_length=400)),
    )


async def make_dialogues(domain: Any, scenarios: list[Any], seeds: int) -> list[dict[str, Any]]:
    from strategist.engine.simulate import simulate
    from strategist.models.embedded import EmbeddedModel

    student, customer = EmbeddedModel(), EmbeddedModel()
    out = []
    for i, sc in enumerate(scenarios):
        sc = sc.model_copy(update={"id": i + 1})
        for seed in range(seeds):
            d = await simulate(
                sc,
                domain,
                Student(student, domain),
                Customer(customer, domain),
                seed=1000 + seed,
                max_turns=1,
            )
            out.append({"scenario": sc.title, "dialogue": d.model_dump(mode="json")})
            print(f"  dialogue {len(out)}: {sc.title!r} seed {seed}", file=sys.stderr, flush=True)
    await student.aclose()
    await customer.aclose()
    return out


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from strategist.models.embedded import EmbeddedModel

    domain = load_domain(NORTHWIND / "domain.yaml")
    _, scenarios = load_scenario_set(NORTHWIND / "scenarios.yaml", domain)
    scenarios = [s for s in scenarios if s.split == "train"][: args.scenarios]
    by_title = {s.title: s for s in scenarios}
    if args.new_dialogues or not DIALOGUES.exists():
        DATA.mkdir(exist_ok=True)
        stored = await make_dialogues(domain, scenarios, args.seeds)
        DIALOGUES.write_text(json.dumps(stored, indent=1) + "\n", encoding="utf-8")
    stored = json.loads(DIALOGUES.read_text(encoding="utf-8"))
    items = [(by_title[x["scenario"]], Dialogue.model_validate(x["dialogue"])) for x in stored]

    model = EmbeddedModel()
    judge = Judge(model, domain)
    old_failed = 0
    old_seconds = 0.0
    if not args.skip_old:
        for sc, d in items:
            criteria = sc.criteria(domain)
            prompt = render(
                "judge_verdict.j2",
                domain=domain,
                scenario=sc,
                transcript=d.transcript(numbered=True),
                rubric=criteria.rubric,
                student_turns=max(1, len(d.student_turns)),
            )
            start = time.perf_counter()
            try:
                await complete_structured(
                    model,
                    [{"role": "user", "content": prompt}],
                    _old_verdict(len(criteria.rubric), len(d.student_turns)),
                    sampling=Sampling(temperature=0.0, max_tokens=420, seed=d.seed),
                )
            except ModelError:
                old_failed += 1
            old_seconds += time.perf_counter() - start
            print(f"  old judge: {old_failed} failed so far", file=sys.stderr, flush=True)

    scores: list[dict[str, Any]] = []
    new_failed = partial = 0
    start = time.perf_counter()
    for sc, d in items:
        try:
            j = await judge.judge(sc, d, seed=d.seed)
        except ModelError:
            new_failed += 1
            scores.append({"scenario": sc.title, "seed": d.seed, "score": None})
            continue
        partial += j.partial
        scores.append(
            {
                "scenario": sc.title,
                "seed": d.seed,
                "score": j.score,
                "score_without_rubric": j.score_on(rubric=False),
                "partial": j.partial,
            }
        )
    new_seconds = time.perf_counter() - start

    # Null pairs: two dialogues of one scenario, no strategy on either side.
    pairs: list[dict[str, Any]] = []
    start = time.perf_counter()
    judged = {(x["scenario"], x["seed"]): x for x in scores if x["score"] is not None}
    for sc in scenarios:
        mine = [(s, d) for s, d in items if s.title == sc.title]
        for (_, a), (_, b) in zip(mine[0::2], mine[1::2], strict=False):
            ja, jb = judged.get((sc.title, a.seed)), judged.get((sc.title, b.seed))
            if ja is None or jb is None:
                continue
            try:
                votes = await judge.compare(sc, a, b, seed=b.seed)
            except ModelError:
                continue
            pairs.append(
                {
                    "scenario": sc.title,
                    "seeds": [a.seed, b.seed],
                    "score_delta": jb["score"] - ja["score"],
                    "preference": pair_preference(votes),
                    "votes": [v.model_dump() for v in votes],
                }
            )
    pair_seconds = time.perf_counter() - start
    await model.aclose()
    n = len(items)
    return {
        "machine": machine_info(),
        "dialogues": n,
        "scenarios": len(scenarios),
        "old": None
        if args.skip_old
        else {"unjudged": old_failed, "rate": old_failed / n, "seconds_per_dialogue": old_seconds / n},
        "new": {
            "unjudged": new_failed,
            "rate": new_failed / n,
            "partial": partial,
            "seconds_per_dialogue": new_seconds / n,
        },
        "scores": scores,
        "null_pairs": pairs,
        "pairwise_seconds_per_pair": pair_seconds / max(1, len(pairs)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", type=int, default=6)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--new-dialogues", action="store_true")
    p.add_argument("--skip-old", action="store_true", help="Do not measure the old answer format.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = asyncio.run(measure(args))
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result))
    else:
        old = result["old"]
        if old:
            print(f"old answer: {old['unjudged']} of {result['dialogues']} unjudged ({old['rate']:.0%})")
        new = result["new"]
        print(
            f"new answer: {new['unjudged']} of {result['dialogues']} unjudged ({new['rate']:.0%}), "
            f"{new['partial']} on checks and rating only"
        )


if __name__ == "__main__":
    main()
