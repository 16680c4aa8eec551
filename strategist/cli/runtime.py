"""``strategist chat`` and ``strategist serve``: the library at run time, in a terminal or over HTTP."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import StrategistError
from .common import DbOption, DomainOption, JsonOption, open_store, print_json, resolve_domain, run_loop

if TYPE_CHECKING:
    from ..runtime import Retrieval, StrategyLibrary

KOption = Annotated[int | None, typer.Option("--k", min=0, help="Strategies per turn, at most (default 3).")]
BudgetOption = Annotated[
    int | None,
    typer.Option(min=0, help="Tokens the strategies may take in the prompt, together (default 300)."),
]
PendingOption = Annotated[
    bool,
    typer.Option(
        "--include-pending",
        help="Also use strategies still pending review (for experiments; shown in the output).",
    ),
]
SystemPromptOption = Annotated[
    str | None,
    typer.Option(
        help="Your bot's own system prompt; the strategies are added after it (default: the domain's)."
    ),
]
TemplateOption = Annotated[
    Path | None,
    typer.Option(
        help="A Jinja2 file that renders the system prompt (gets system_prompt, domain, strategies)."
    ),
]

QUIT = ("/quit", "/exit")


ReleaseOption = Annotated[
    str | None,
    typer.Option(
        "--release",
        help="Use exactly the strategies of this release label (e.g. production) or release name; a "
        "label follows its promotions and rollbacks (default: the live approved set).",
    ),
]


def _library(
    db: str | None,
    domain: str | None,
    k: int | None,
    budget: int | None,
    include_pending: bool,
    template: Path | None,
    release: str | None = None,
) -> StrategyLibrary:
    from ..runtime import StrategyLibrary
    from ..runtime.library import DEFAULT_BUDGET, DEFAULT_K

    store = open_store(db)
    dom = resolve_domain(store, domain)
    library = StrategyLibrary(
        store,
        domain=dom.id,
        k=DEFAULT_K if k is None else k,
        budget=DEFAULT_BUDGET if budget is None else budget,
        include_pending=include_pending,
        template=template,
        owns_store=True,
        release=release,
    )
    library.optimize(only_if_needed=True)
    return library


def _used(found: Retrieval) -> str:
    if not found.strategies:
        return "strategies: none"
    parts = []
    for r in found.strategies:
        mark = " [pending]" if r.status != "approved" else ""
        parts.append(f"{r.ref} ({r.score:.2f}){mark}")
    return "strategies: " + ", ".join(parts)


def chat(
    db: DbOption = None,
    domain: DomainOption = None,
    student: Annotated[
        str | None, typer.Option(help="Student model (default: settings, then embedded/smollm2).")
    ] = None,
    k: KOption = None,
    budget: BudgetOption = None,
    include_pending: PendingOption = False,
    system_prompt: SystemPromptOption = None,
    template: TemplateOption = None,
    release: ReleaseOption = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Longest reply, in tokens.")] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="Sampling temperature.")] = 0.7,
    seed: Annotated[int | None, typer.Option(help="Sampling seed, where the model supports one.")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per turn (reply, strategies, scores).")
    ] = False,
) -> None:
    """Talk to the student as a customer: one line per message, /reset to start over, /quit to end.

    Each reply is followed by the strategies that were in its prompt, with their scores.
    """
    from ..config import load_settings, resolve_roles
    from ..models import resolve_model
    from ..models.base import Sampling
    from ..runtime import StrategicBot

    library = _library(db, domain, k, budget, include_pending, template, release)
    cfg = resolve_roles({"student": student}, load_settings())["student"]
    model = resolve_model(cfg.model, **cfg.options())
    bot = StrategicBot(
        model,
        library,
        library.domain_id(),
        system_prompt,
        sampling=Sampling(temperature=temperature, max_tokens=max_tokens, seed=seed),
    )
    interactive = sys.stdin.isatty()
    if not json_out:
        which = "approved and PENDING" if include_pending else "approved"
        if release:
            which = f"release '{library.ranker.release}'"
        typer.echo(f"chatting with {model.name} on domain '{bot.domain}' ({which} strategies); /quit to end")

    async def talk() -> None:
        history: list[dict[str, Any]] = []
        try:
            while True:
                if interactive:
                    typer.echo("you> ", nl=False)
                line = sys.stdin.readline()
                if not line:
                    break
                text = line.strip()
                if not text:
                    continue
                if text in QUIT:
                    break
                if text == "/reset":
                    history.clear()
                    if not json_out:
                        typer.echo("(conversation cleared)")
                    continue
                history.append({"role": "user", "content": text})
                stream = await bot.astream(history)
                if not json_out:
                    typer.echo("bot> ", nl=False)
                async for piece in stream:
                    if not json_out:
                        typer.echo(piece, nl=False)
                reply = stream.reply.text.strip()
                history.append({"role": "assistant", "content": reply})
                if json_out:
                    print_json({"customer": text, **stream.reply.as_dict(), "text": reply})
                else:
                    typer.echo("")
                    typer.echo(f"  {_used(stream.retrieval)}")
        finally:
            await bot.aclose()
            library.close()

    run_loop(talk())


def serve(
    upstream: Annotated[
        str | None,
        typer.Option(help="The model requests go on to (default: the student's model from settings)."),
    ] = None,
    api_base: Annotated[
        str | None, typer.Option(help="Base URL of a self-hosted OpenAI-compatible upstream (…/v1).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    db: DbOption = None,
    domain: DomainOption = None,
    k: KOption = None,
    budget: BudgetOption = None,
    include_pending: PendingOption = False,
    system_prompt: Annotated[
        str | None,
        typer.Option(
            help="System prompt for requests that bring none (default: the domain's policy prompt)."
        ),
    ] = None,
    template: TemplateOption = None,
    model_name: Annotated[
        list[str] | None,
        typer.Option(
            "--model-name", help="Accept only requests for this model name (repeatable; default: any name)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    max_request_bytes: Annotated[
        int, typer.Option(min=1, help="Larger request bodies get 413 without being read (default 4 MiB).")
    ] = 4 * 1024 * 1024,
    release: ReleaseOption = None,
    capture: Annotated[
        bool,
        typer.Option(
            "--capture",
            help="Store every conversation served, redacted, with the strategies used per turn, for "
            "strategist traffic judge and harvest (off by default; written in batches, never on the "
            "request's path).",
        ),
    ] = False,
    capture_db: Annotated[
        str | None,
        typer.Option(
            help="With --capture: store the conversations in this database instead of the library's."
        ),
    ] = None,
) -> None:
    """Serve an OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models) that adds the
    right strategies to every request and forwards it to the upstream model.

    Point an existing bot's OpenAI client at http://HOST:PORT/v1. The strategies used are in the
    x-strategist-strategies response header.
    """
    import uvicorn

    from ..config import load_settings, resolve_roles
    from ..models import resolve_model
    from ..server import create_app, listen_socket

    if capture_db and not capture:
        raise StrategistError("--capture-db goes with --capture")
    library = _library(db, domain, k, budget, include_pending, template, release)
    cfg = resolve_roles({"student": upstream}, load_settings())["student"]
    options = cfg.options()
    if api_base:
        options["api_base"] = api_base
    model = resolve_model(cfg.model, **options)
    recorder = _recorder(library, capture_db) if capture else None
    app = create_app(
        library,
        model,
        library.domain_id(),
        model_names=model_name,
        system_prompt=system_prompt,
        max_request_bytes=max_request_bytes,
        capture=recorder,
    )
    which = "approved and PENDING" if include_pending else "approved"
    if release:
        pinned = library.ranker.release
        which = f"the strategies of release '{pinned}'" + (
            f", label '{release}'" if release != pinned else ""
        )
    where = f"http://{host}:{port}/v1"
    try:
        # Bound here, before the app starts: a busy port is one line, not uvicorn's log and exit 3.
        sock = listen_socket(host, port)
        shown = which if release else f"{which} strategies"
        typer.echo(f"serving {where} -> {model.name}, domain '{library.domain_id()}' ({shown})")
        if recorder is not None:
            url = recorder.store.engine.url
            typer.echo(f"capturing conversations (redacted) into {url.database or url}")
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            sock.close()
        if not server.started:
            raise typer.Exit(3)  # the app failed to start; uvicorn logged why
    finally:
        library.close()


def _recorder(library: StrategyLibrary, capture_db: str | None) -> Any:
    from ..redact import Redactor
    from ..runtime.capture import TrafficRecorder

    dom = library.domain()
    store = library.store
    if capture_db:
        store = open_store(capture_db, create=True)
        store.upsert_domain(dom)  # the conversations name their domain
    return TrafficRecorder(
        store, dom.id, redactor=Redactor(keep=[dom.company, dom.name]), meta={"release_ref": library.release}
    )


def strategies_for(
    text: Annotated[str, typer.Argument(help="The customer's message.")],
    db: DbOption = None,
    domain: DomainOption = None,
    k: KOption = None,
    budget: BudgetOption = None,
    include_pending: PendingOption = False,
    release: ReleaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show which strategies a customer message would retrieve, with scores (no model is called)."""
    from .views import table

    library = _library(db, domain, k, budget, include_pending, None, release)
    try:
        found = library.retrieve([{"role": "user", "content": text}])
    finally:
        library.close()
    if json_out:
        print_json(found.as_dict())
        return
    table(
        f"retrieved for domain '{found.domain}' ({found.tokens} tokens, ranker {found.ranker})",
        ["ref", "status", "score", "tokens", "when"],
        [(r.ref, r.status, f"{r.score:.3f}", r.tokens, r.strategy.trigger) for r in found.strategies],
    )
