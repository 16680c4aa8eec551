"""``strategist tools``: the tools a domain's agent can use, listed and called by hand (to debug a
pack's ``tools:`` section before a long run)."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InputError, StrategistError
from .common import (
    DbOption,
    DomainOption,
    JsonOption,
    fail,
    new_app,
    open_store,
    print_json,
    resolve_domain,
    run_loop,
)
from .views import say, short, table

if TYPE_CHECKING:
    from ..core.domain import Domain
    from ..tools import ToolEnvironment

app = new_app("Tools: list and call the tools of a domain's agent.")


def _environment(db: str | None, domain: str | None) -> tuple[Domain, ToolEnvironment]:
    from ..engine.runner import tools_for

    d = resolve_domain(open_store(db), domain)
    env = tools_for(d)
    if env is None:
        raise StrategistError(f"domain '{d.id}' has no tools (give its pack a tools: section)")
    return d, env


def _params(schema: dict[str, Any]) -> str:
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    return ", ".join(
        f"{k}{'' if k in required else '?'}: {v.get('type', 'any') if isinstance(v, dict) else 'any'}"
        for k, v in props.items()
    )


@app.command("list")
def tools_list(db: DbOption = None, domain: DomainOption = None, json_out: JsonOption = False) -> None:
    """List the tools the domain's agent is offered (starting its tool server if it has one)."""
    d, env = _environment(db, domain)

    async def go() -> list[Any]:
        async with env:
            return await env.list_tools()

    specs = run_loop(go())
    if json_out:
        print_json([s.to_openai() for s in specs])
        return
    table(
        f"{len(specs)} tools of domain '{d.id}'",
        ["name", "arguments", "description"],
        [(s.name, _params(s.parameters), short(s.description, 70)) for s in specs],
    )


@app.command("call")
def tools_call(
    name: Annotated[str, typer.Argument(help="The tool's name.")],
    args: Annotated[str, typer.Option("--args", help="The arguments as a JSON object.")] = "{}",
    db: DbOption = None,
    domain: DomainOption = None,
    json_out: JsonOption = False,
) -> None:
    """Call one tool in a fresh, isolated state (as a dialogue would) and print its result.

    Exits 1 when the call fails (the error the agent would see is printed)."""
    try:
        arguments = json.loads(args)
    except ValueError as exc:
        raise InputError("--args", "", f"not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise InputError("--args", "", 'expected a JSON object, e.g. \'{"order_id": "W1"}\'')
    _, env = _environment(db, domain)

    async def go() -> Any:
        async with env, env.session(f"strategist/cli/{uuid.uuid4().hex[:12]}") as toolset:
            return await toolset.call(name, arguments)

    result = run_loop(go())
    if json_out:
        print_json(result.model_dump())
    else:
        say(result.content)
        say(f"({'error' if result.error else 'ok'}, {result.latency_ms:.0f} ms)", style="dim")
    if result.error:
        if json_out:
            raise typer.Exit(1)
        fail(result.error)
