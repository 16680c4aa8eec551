"""Property-based tests of every loader of user files: domain packs, scenario sets, strategist.toml,
library files and tau2-bench folders. Whatever the file holds, a loader either loads it or raises
a StrategistError whose message is one line naming the file; never another exception.

Inputs: arbitrary bytes and text, arbitrary YAML/TOML/JSON data, and mutations of the valid shipped
files (a key dropped or renamed, a value of another type, odd unicode inserted, text cut short).
Examples are random locally and fixed under CI (derandomize), so CI never fails by chance."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from strategist.audit.exchange import read_library
from strategist.cli import app
from strategist.config import load_settings
from strategist.errors import StrategistError
from strategist.packs import load_domain, load_scenario_set, read_yaml

ROOT = Path(__file__).resolve().parent.parent
NORTHWIND = ROOT / "scenarios" / "northwind"
TAU2_MINI = ROOT / "tests" / "fixtures" / "tau2-mini"
DOMAIN_TEXT = (NORTHWIND / "domain.yaml").read_text(encoding="utf-8")
SCENARIOS_TEXT = (NORTHWIND / "scenarios.yaml").read_text(encoding="utf-8")
DOMAIN_DATA = yaml.safe_load(DOMAIN_TEXT)
SCENARIOS_DATA = yaml.safe_load(SCENARIOS_TEXT)
# Two scenarios are as good a base for mutations as fourteen, and much faster to write and read.
SCENARIOS_BASE = {**SCENARIOS_DATA, "scenarios": SCENARIOS_DATA["scenarios"][:2]}
SCENARIOS_BASE_TEXT = yaml.safe_dump(SCENARIOS_BASE, allow_unicode=True, sort_keys=False)
SETTINGS_DATA: dict[str, Any] = {
    "db": "lib.db",
    "domain": "northwind",
    "roles": {
        "student": {
            "model": "openai/my-model",
            "api_base": "http://127.0.0.1:8080/v1",
            "json_mode": "object",
        },
        "judge": {"model": "anthropic/claude", "api_key_env": "MY_JUDGE_KEY", "timeout": 30.0},
    },
}
LIBRARY_DATA: dict[str, Any] = {
    "format": "strategist-library/1",
    "strategies": [
        {
            "id": 1,
            "domain": "northwind",
            "status": "approved",
            "version": 2,
            "trigger": "When a customer asks for a card refund after 30 days",
            "guidance": "Explain the 31-60 day rule and offer store credit.",
            "example": "I can offer store credit.",
            "policy_check": {
                "conflict": False,
                "clause": "",
                "explanation": "fine",
                "model": "m",
                "version": 2,
            },
            "provenance": {"run_id": 3, "candidate_id": 7},
            "evidence": {"samples": 3, "deltas": [0.25, 0.5], "mean_delta": 0.375, "ci_low": 0.25},
            "versions": [
                {
                    "version": 1,
                    "author": "gate",
                    "created_at": "2025-01-02T03:04:05Z",
                    "trigger": "When a customer asks for a refund",
                    "guidance": "Offer store credit.",
                },
                {
                    "version": 2,
                    "author": "ana",
                    "created_at": "2025-01-03T03:04:05Z",
                    "trigger": "When a customer asks for a card refund after 30 days",
                    "guidance": "Explain the 31-60 day rule and offer store credit.",
                    "example": "I can offer store credit.",
                },
            ],
        },
        {"domain": "northwind", "trigger": "When the customer is angry", "guidance": "Stay calm."},
    ],
}

FUZZ = settings(
    max_examples=int(os.environ.get("STRATEGIST_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Characters that have broken parsers and one-line messages before: line and paragraph separators,
# NEL, BOM, bidi overrides, combining marks, astral and private-use code points, tabs and CRs.
ODD = [
    "\u2028",
    "\u2029",
    "\x85",
    "\ufeff",
    "\u202e",
    "\u0301",
    "\U0001f4a5",
    "\U0010fffd",
    "\t",
    "\r",
    "\n",
    "\x0b",
    "\x1c",
    "İ",
    "ß",
    "\\",
    '"',
    "'",
    ": ",
    "- ",
    "#",
    "&a",
    "*a",
    "!!",
    "{",
    "[",
    "%",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(ODD),
)
keys = st.one_of(
    st.text(max_size=12), st.sampled_from(["id", "intents", "scenarios", "domain", "roles", *ODD])
)
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=15,
)


# -- mutating a valid file -----------------------------------------------------------------------------
def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*at, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with one to three of: a node dropped, replaced by another type, emptied, wrapped,
    given odd unicode, or (for a mapping key) renamed."""
    root = {"": copy.deepcopy(base)}
    for _ in range(draw(st.integers(1, 3))):
        path = ("", *draw(st.sampled_from(_paths(root[""]))))
        parent = root
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        value = parent[key]
        op = draw(st.sampled_from(["drop", "retype", "empty", "wrap", "unicode", "rename"]))
        if op == "drop" and len(path) > 1:
            del parent[key]
        elif op == "retype":
            parent[key] = draw(data)
        elif op == "empty":
            parent[key] = draw(st.sampled_from([None, "", [], {}, 0, False, " "]))
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[value], {"x": value}]))
        elif op == "rename" and isinstance(parent, dict) and len(path) > 1:
            parent[f"{key}{draw(st.sampled_from(ODD))}"] = parent.pop(key)
        else:
            text = value if isinstance(value, str) else str(value)
            at = draw(st.integers(0, len(text)))
            parent[key] = text[:at] + draw(st.sampled_from(ODD)) + text[at:]
    return root[""]


@st.composite
def edited_text(draw: st.DrawFn, text: str) -> str:
    """A valid file's text cut short, with a slice removed or odd characters put in."""
    a = draw(st.integers(0, len(text)))
    b = draw(st.integers(a, min(len(text), a + 200)))
    op = draw(st.sampled_from(["cut", "remove", "insert"]))
    if op == "cut":
        return text[:a]
    if op == "remove":
        return text[:a] + text[b:]
    return text[:a] + draw(st.text(min_size=1, max_size=5) | st.sampled_from(ODD)) + text[a:]


def yaml_text(value: Any, unicode: bool) -> str:
    return yaml.safe_dump(value, allow_unicode=unicode, sort_keys=False)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{"
            + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)} = {toml_value(x)}" for k, x in v.items())
            + "}"
        )
    if v is None:
        return '""'
    return json.dumps(v, ensure_ascii=False)


def toml_text(value: Any) -> str:
    """A small TOML writer: top-level keys, nested tables as inline tables (TOML has no null: "")."""
    if not isinstance(value, dict):
        return f"value = {toml_value(value)}\n"
    return "".join(f"{json.dumps(str(k), ensure_ascii=False)} = {toml_value(v)}\n" for k, v in value.items())


# -- the property ---------------------------------------------------------------------------------------
def loads_or_fails_cleanly(load: Callable[[Path], Any], path: Path, named: Path | None = None) -> None:
    """``load(path)`` works, or raises a one-line StrategistError naming the file (or ``named``)."""
    try:
        load(path)
    except StrategistError as exc:
        msg = str(exc)
        assert len(msg.splitlines()) == 1, repr(msg)
        assert str(named or path) in msg, msg


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


@pytest.fixture(scope="module")
def northwind_domain():
    return load_domain(NORTHWIND / "domain.yaml")


def test_the_shipped_files_load(northwind_domain):
    assert northwind_domain.id == "northwind"
    assert load_scenario_set(NORTHWIND / "scenarios.yaml", northwind_domain)[0] == "northwind"


# Known crashes, found by this file, kept as explicit examples.
YAML_TRAPS = [
    "id: 2024-13-45\n",  # a date YAML recognises but cannot build
    "max_turns: !!int 0x\n",
    "max_turns: !!float abc\n",
    "[" * 700 + "]" * 700,  # nested too deeply for the parser
    "success_criteria:\n  must_say:\n    - regex: 'a{4294967296}'\n",  # re.compile: OverflowError
    "success_criteria:\n  must_say:\n    - regex: '" + "(" * 1200 + ")" * 1200 + "'\n",  # RecursionError
    'persona_dimensions:\n  "mood\\nline": []\n',  # a key with a line break in the message
]


# -- domain packs and scenario sets ------------------------------------------------------------------
@FUZZ
@given(content=st.binary(max_size=300) | st.text(max_size=300))
@example(content=b"\xff\xfe\x00")
@example(content="\ufeffid: x\n")
def test_any_bytes_or_text(tmp_path, northwind_domain, content):
    path = _write(tmp_path / "domain.yaml", content)
    loads_or_fails_cleanly(read_yaml, path)
    loads_or_fails_cleanly(load_domain, path)
    loads_or_fails_cleanly(lambda p: load_scenario_set(p, northwind_domain), path)


@FUZZ
@given(value=data, unicode=st.booleans())
def test_any_yaml_data(tmp_path, northwind_domain, value, unicode):
    path = _write(tmp_path / "any.yaml", yaml_text(value, unicode))
    loads_or_fails_cleanly(load_domain, path)
    loads_or_fails_cleanly(load_scenario_set, path)
    loads_or_fails_cleanly(lambda p: load_scenario_set(p, northwind_domain), path)


@FUZZ
@given(value=mutated(DOMAIN_DATA), unicode=st.booleans())
def test_mutated_domain_pack(tmp_path, value, unicode):
    loads_or_fails_cleanly(load_domain, _write(tmp_path / "domain.yaml", yaml_text(value, unicode)))


@FUZZ
@given(value=mutated(SCENARIOS_BASE), unicode=st.booleans())
def test_mutated_scenario_set(tmp_path, northwind_domain, value, unicode):
    path = _write(tmp_path / "scenarios.yaml", yaml_text(value, unicode))
    loads_or_fails_cleanly(load_scenario_set, path)
    loads_or_fails_cleanly(lambda p: load_scenario_set(p, northwind_domain), path)


@FUZZ
@given(text=edited_text(DOMAIN_TEXT) | edited_text(SCENARIOS_BASE_TEXT))
def test_edited_shipped_text(tmp_path, northwind_domain, text):
    path = _write(tmp_path / "pack.yaml", text)
    loads_or_fails_cleanly(load_domain, path)
    loads_or_fails_cleanly(lambda p: load_scenario_set(p, northwind_domain), path)


@pytest.mark.parametrize("text", YAML_TRAPS)
def test_yaml_traps(tmp_path, northwind_domain, text):
    path = _write(tmp_path / "domain.yaml", text)
    loads_or_fails_cleanly(read_yaml, path)
    loads_or_fails_cleanly(load_domain, path)
    loads_or_fails_cleanly(lambda p: load_scenario_set(p, northwind_domain), path)


@pytest.mark.parametrize("regex", ["a{4294967296}", "(" * 1200 + ")" * 1200])
def test_scenario_regex_traps(tmp_path, regex):
    spec = {**SCENARIOS_DATA["scenarios"][0], "success": {"must_not_say": [{"regex": regex}]}}
    path = _write(tmp_path / "s.yaml", yaml_text({"domain": "northwind", "scenarios": [spec]}, True))
    loads_or_fails_cleanly(load_scenario_set, path)


def test_unreadable_files(tmp_path, northwind_domain):
    folder = tmp_path / "a-folder.yaml"
    folder.mkdir()
    for load in (read_yaml, load_domain, lambda p: load_scenario_set(p, northwind_domain)):
        loads_or_fails_cleanly(load, folder)
        loads_or_fails_cleanly(load, tmp_path / "missing.yaml")
    loads_or_fails_cleanly(lambda p: load_settings(p), folder)


# -- strategist.toml ----------------------------------------------------------------------------------------
@FUZZ
@given(content=st.binary(max_size=200) | st.text(max_size=200))
@example(content=b'db = "\xff"\n')
def test_settings_any_bytes_or_text(tmp_path, content):
    loads_or_fails_cleanly(load_settings, _write(tmp_path / "strategist.toml", content))


@FUZZ
@given(value=data | mutated(SETTINGS_DATA))
def test_settings_any_toml_data(tmp_path, value):
    loads_or_fails_cleanly(load_settings, _write(tmp_path / "strategist.toml", toml_text(value)))


def test_the_settings_base_loads(tmp_path):
    settings_ = load_settings(_write(tmp_path / "strategist.toml", toml_text(SETTINGS_DATA)))
    assert settings_.role("judge").api_key_env == "MY_JUDGE_KEY"


# -- library files (strategies import) ---------------------------------------------------------------


def test_the_library_base_loads(tmp_path):
    lib, _ = read_library(_write(tmp_path / "lib.yaml", yaml_text(LIBRARY_DATA, True)))
    assert [s.id for s in lib.strategies] == [1, None]


@FUZZ
@given(content=st.binary(max_size=300) | st.text(max_size=300) | data.map(lambda v: yaml_text(v, True)))
def test_library_any_input(tmp_path, content):
    loads_or_fails_cleanly(read_library, _write(tmp_path / "lib.yaml", content))


@FUZZ
@given(value=mutated(LIBRARY_DATA), unicode=st.booleans())
def test_library_mutated(tmp_path, value, unicode):
    loads_or_fails_cleanly(read_library, _write(tmp_path / "lib.yaml", yaml_text(value, unicode)))


@pytest.mark.parametrize("text", YAML_TRAPS[:4])
def test_library_yaml_traps(tmp_path, text):
    loads_or_fails_cleanly(read_library, _write(tmp_path / "lib.yaml", text))


# -- tau2-bench folders ----------------------------------------------------------------------------------
def _tau2_json(name: str) -> Any:
    return json.loads((TAU2_MINI / name).read_text(encoding="utf-8"))


@pytest.fixture
def tau2_folder(tmp_path):
    pytest.importorskip("strategist.importers.tau2")
    folder = tmp_path / "tau2"
    shutil.copytree(TAU2_MINI, folder)
    return folder


def _load_tau2(folder: Path) -> Any:
    from strategist.importers.tau2 import load_tau2

    return load_tau2(folder, "mini")


def test_the_tau2_fixture_loads(tau2_folder):
    assert _load_tau2(tau2_folder).scenarios


@FUZZ
@given(
    name=st.sampled_from(["tasks.json", "split_tasks.json", "db.json", "policy.md"]),
    content=st.binary(max_size=200) | st.text(max_size=200) | data.map(lambda v: json.dumps(v)),
)
def test_tau2_any_file(tau2_folder, name, content):
    original = (TAU2_MINI / name).read_bytes()
    _write(tau2_folder / name, content)
    try:
        loads_or_fails_cleanly(_load_tau2, tau2_folder)
    finally:
        (tau2_folder / name).write_bytes(original)


@FUZZ
@given(
    name_and_value=st.sampled_from(["tasks.json", "split_tasks.json", "db.json"]).flatmap(
        lambda n: st.tuples(st.just(n), mutated(_tau2_json(n)))
    )
)
def test_tau2_mutated(tau2_folder, name_and_value):
    name, value = name_and_value
    original = (TAU2_MINI / name).read_bytes()
    # json.dumps writes NaN and Infinity, which Python's json reads back: a fair test too.
    _write(tau2_folder / name, json.dumps(value, ensure_ascii=False))
    try:
        loads_or_fails_cleanly(_load_tau2, tau2_folder)
    finally:
        (tau2_folder / name).write_bytes(original)


# -- the command line ------------------------------------------------------------------------------------
@pytest.fixture
def cli_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("STRATEGIST_DB", "STRATEGIST_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _assert_clean_failure(result: Any) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output


def _broken(base: dict[str, Any], required: str) -> Any:
    """Mutations that always leave the file invalid: ``required`` is dropped or of the wrong type."""
    return mutated(base).flatmap(
        lambda v: st.sampled_from(
            [
                {k: x for k, x in v.items() if k != required} if isinstance(v, dict) else v,
                {**v, required: "not a list"} if isinstance(v, dict) else v,
            ]
        )
    )


@settings(FUZZ, max_examples=12)
@given(
    value=_broken(SCENARIOS_BASE, "scenarios")
    | st.binary(min_size=1, max_size=100).map(lambda b: b"\xff" + b)
)
def test_cli_scenarios_import_fails_in_one_line(cli_dir, value):
    path = cli_dir / "fuzzed.yaml"
    _write(path, value if isinstance(value, bytes) else yaml_text(value, True))
    result = CliRunner().invoke(app, ["scenarios", "import", str(path), "--db", str(cli_dir / "lib.db")])
    _assert_clean_failure(result)
    assert str(path) in result.stderr


@settings(FUZZ, max_examples=12)
@given(value=_broken(DOMAIN_DATA, "intents") | st.binary(min_size=1, max_size=100).map(lambda b: b"\xff" + b))
def test_cli_domains_add_fails_in_one_line(cli_dir, value):
    pack = cli_dir / "pack"
    pack.mkdir(exist_ok=True)
    path = pack / "domain.yaml"
    _write(path, value if isinstance(value, bytes) else yaml_text(value, True))
    result = CliRunner().invoke(app, ["domains", "add", str(path), "--db", str(cli_dir / "lib.db")])
    _assert_clean_failure(result)
    assert str(path) in result.stderr


def test_cli_scenarios_import_with_a_list_as_domain(cli_dir):
    path = _write(cli_dir / "s.yaml", "domain: [northwind]\nscenarios: []\n")
    result = CliRunner().invoke(
        app, ["scenarios", "import", str(path), "--db", str(cli_dir / "lib.db")], catch_exceptions=False
    )
    _assert_clean_failure(result)


@pytest.mark.parametrize("name", ["tasks.json", "db.json"])
def test_tau2_deeply_nested_json(tau2_folder, name):
    _write(tau2_folder / name, "[" * 100_000 + "]" * 100_000)
    loads_or_fails_cleanly(_load_tau2, tau2_folder)
