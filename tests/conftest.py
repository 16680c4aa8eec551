from __future__ import annotations

import os
from pathlib import Path

import pytest

# litellm must never fetch its price table from the network during tests.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parent.parent
NORTHWIND = ROOT / "scenarios" / "northwind"


@pytest.fixture
def northwind():
    from strategist.packs import load_domain

    return load_domain(NORTHWIND / "domain.yaml")


@pytest.fixture
def store(tmp_path):
    from strategist.store import Store

    s = Store.open(tmp_path / "test.db")
    yield s
    s.close()


# -- the same tests on SQLite and PostgreSQL ------------------------------------------------------
POSTGRES_URL_ENV = "STRATEGIST_TEST_POSTGRES_URL"


@pytest.fixture
def postgres_db():
    """A new, empty PostgreSQL schema of its own, as a URL for ``Store.open`` (its search_path
    picks the schema); dropped after the test. Skips unless $STRATEGIST_TEST_POSTGRES_URL is set
    (.ci/postgres.sh prepares the server it points at)."""
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"${POSTGRES_URL_ENV} is not set (see .ci/postgres.sh)")
    import uuid

    import sqlalchemy as sa

    from strategist.store import database_url

    url = sa.engine.make_url(database_url(base))
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request, tmp_path):
    """A fresh, empty database as the path or URL ``Store.open`` takes: a SQLite file, then a
    PostgreSQL schema (see ``postgres_db``)."""
    if request.param == "sqlite":
        return str(tmp_path / "test.db")
    return request.getfixturevalue("postgres_db")


@pytest.fixture
def any_store(any_db):
    """A migrated Store on ``any_db``: SQLite, then PostgreSQL."""
    from strategist.store import Store

    s = Store.open(any_db)
    yield s
    s.close()


# -- a real OpenAI-compatible server for the embedded model ---------------------------------------
LLAMA_SERVER_STARTUP_SECONDS = 60


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()
            proc.wait(timeout=10)


def wait_for_http(url: str, proc, log_path: Path, seconds: float, ready=None) -> None:
    """Poll ``url`` until ``ready(response)``; fail with the process's log if it dies or times out."""
    import time

    import httpx

    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200 and (ready is None or ready(r)):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"server not ready after {seconds} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """Base URL (without /v1) of llama-cpp-python's OpenAI-compatible server on 127.0.0.1, serving
    the embedded model (SmolLM2) as 'smollm2'; one for the whole session."""
    import subprocess
    import sys

    pytest.importorskip("llama_cpp.server")
    from strategist.errors import ModelUnavailableError
    from strategist.models.embedded import smollm2_path

    try:
        model_file = smollm2_path()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_file), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--model_alias", "smollm2", "--n_ctx", "4096"]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_http(
                f"{base}/v1/models",
                proc,
                log_path,
                LLAMA_SERVER_STARTUP_SECONDS,
                ready=lambda r: "smollm2" in [m.get("id") for m in r.json().get("data", [])],
            )
            yield base
        finally:
            stop_process(proc)
