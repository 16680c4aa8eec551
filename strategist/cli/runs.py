"""``strategist runs``: what each grow and each evaluation did, what it cost, what failed."""

from __future__ import annotations

from .common import DbOption, JsonOption, new_app, open_store, print_json
from .views import print_eval, print_summary, say, short, table

app = new_app("Runs: what each grow and evaluation did and what it cost.")


@app.command("list")
def runs_list(db: DbOption = None, json_out: JsonOption = False) -> None:
    """List grow and eval runs."""
    store = open_store(db)
    rows = store.list_runs()
    if json_out:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table(
        f"{len(rows)} runs",
        ["id", "command", "domain", "status", "started", "calls", "accepted", "stop reason"],
        [
            (
                r.id,
                r.command,
                r.domain_id,
                r.status,
                r.started_at.strftime("%Y-%m-%d %H:%M"),
                r.summary.get("llm_calls"),
                r.summary.get("accepted") if r.command == "grow" else "-",
                r.stop_reason,
            )
            for r in rows
        ],
    )


@app.command("show")
def runs_show(run_id: int, db: DbOption = None, json_out: JsonOption = False) -> None:
    """Show a run's summary, its settings, the strategies it proposed (and what the gate decided)
    and its recorded failures."""
    store = open_store(db)
    r = store.get_run(run_id)
    events = store.events(run_id)
    candidates = store.list_candidates(run_id)
    if json_out:
        d = r.model_dump(mode="json")
        d["events"] = [e.model_dump(mode="json") for e in events]
        d["candidates"] = [c.model_dump(mode="json") for c in candidates]
        print_json(d)
        return
    say(f"run {r.id}: {r.command} on domain {r.domain_id}, {r.status}", style="bold")
    if r.summary and r.command == "eval":
        print_eval(r.summary)
    elif r.summary and r.command == "grow":
        print_summary(r.summary)
    elif r.summary:  # harvest, import-transcripts, traffic-judge: what it did, as key and value
        table(
            f"run {r.id}: {r.status}",
            ["what", "value"],
            [(k, v if not isinstance(v, list) else len(v)) for k, v in r.summary.items()],
            show_header=False,
        )
    elif r.stop_reason:
        say(f"stopped: {r.stop_reason}")
    say("models: " + ", ".join(f"{k}={v}" for k, v in r.config.get("models", {}).items()))
    if candidates:
        from ..core.evidence import GateEvidence

        table(
            f"{len(candidates)} proposed strategies",
            ["id", "round", "outcome", "strategy", "source", "trigger", "gate"],
            [
                (
                    c.id,
                    c.round,
                    c.outcome,
                    c.strategy_id,
                    GateEvidence.from_stored(c.evidence).source or "-",
                    short(c.trigger),
                    short(c.reason, 70),
                )
                for c in candidates
            ],
        )
    for e in events:
        say(f"  [{e.kind}] round {e.round}: {e.message}")
