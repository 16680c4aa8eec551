"""Settings and precedence (strategist/config.py) and model names (strategist/models/__init__.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from strategist.config import (
    DEFAULT_DB,
    DEFAULT_MODEL,
    ROLES,
    RoleConfig,
    Settings,
    config_path,
    default_config_text,
    load_settings,
    resolve_db,
    resolve_roles,
)
from strategist.errors import ConfigError, ModelUnavailableError
from strategist.models import ScriptedModel, register_model, resolve_model, unregister_model

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "strategist.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- defaults and precedence ----------------------------------------------------------------------


def test_defaults_are_embedded_smollm2_for_all_roles():
    assert DEFAULT_MODEL == "embedded/smollm2"
    roles = resolve_roles({}, Settings(), env={})
    assert set(roles) == {"teacher", "student", "customer", "judge"} == set(ROLES)
    for cfg in roles.values():
        assert cfg.model == "embedded/smollm2"
        assert cfg.api_base is None
        assert cfg.json_mode == "auto"


def test_missing_settings_file_means_defaults(tmp_path):
    s = load_settings(tmp_path / "absent.toml")
    assert s == Settings()
    assert s.db == DEFAULT_DB == "strategist.db"
    assert s.role("judge").model == DEFAULT_MODEL


def test_precedence_flag_env_file_default(tmp_path):
    path = write(
        tmp_path,
        """
        [roles.teacher]
        model = "openai/file-teacher"
        api_base = "http://file-teacher/v1"

        [roles.student]
        model = "openai/file-student"
        api_base = "http://file-student/v1"

        [roles.customer]
        model = "openai/file-customer"
    """,
    )
    settings = load_settings(path)
    env = {
        "STRATEGIST_TEACHER_MODEL": "openai/env-teacher",
        "STRATEGIST_STUDENT_MODEL": "openai/env-student",
        "STRATEGIST_STUDENT_API_BASE": "http://env-student/v1",
    }
    flags = {"teacher": "openai/flag-teacher", "student": None}
    roles = resolve_roles(flags, settings, env=env)
    assert roles["teacher"].model == "openai/flag-teacher"  # flag > env > file
    # The file's api_base belongs to the file's model: it does not carry over to another model.
    assert roles["teacher"].api_base is None
    assert roles["student"].model == "openai/env-student"  # env > file
    assert roles["student"].api_base == "http://env-student/v1"
    assert roles["customer"].model == "openai/file-customer"  # file > default
    assert roles["judge"].model == DEFAULT_MODEL  # default
    # Naming the file's own model again keeps the file's connection options.
    same = resolve_roles({"teacher": "openai/file-teacher"}, settings, env={})
    assert same["teacher"].api_base == "http://file-teacher/v1"
    # resolving does not change the settings it was given
    assert settings.role("teacher").model == "openai/file-teacher"
    assert settings.role("student").api_base == "http://file-student/v1"


def test_empty_env_values_are_ignored():
    roles = resolve_roles({}, Settings(), env={"STRATEGIST_JUDGE_MODEL": "", "STRATEGIST_JUDGE_API_BASE": ""})
    assert roles["judge"].model == DEFAULT_MODEL
    assert roles["judge"].api_base is None


def test_env_api_base_alone_applies_to_default_model():
    roles = resolve_roles({}, Settings(), env={"STRATEGIST_CUSTOMER_API_BASE": "http://h/v1"})
    assert roles["customer"].api_base == "http://h/v1"
    assert roles["student"].api_base is None


def test_resolve_roles_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("STRATEGIST_JUDGE_MODEL", "openai/from-os-env")
    assert resolve_roles({}, Settings())["judge"].model == "openai/from-os-env"


def test_file_options_are_read(tmp_path):
    path = write(
        tmp_path,
        """
        db = "data/my.db"
        domain = "northwind"

        [roles.judge]
        model = "openai/gpt-4o"
        api_key_env = "MY_JUDGE_KEY"
        json_mode = "object"
        timeout = 30
    """,
    )
    s = load_settings(path)
    assert (s.db, s.domain) == ("data/my.db", "northwind")
    judge = s.role("judge")
    assert judge.options() == {
        "api_base": None,
        "client": "auto",
        "api_key_env": "MY_JUDGE_KEY",
        "json_mode": "object",
        "timeout": 30.0,
        "retries": 4,
    }
    assert s.role("teacher") == RoleConfig()


def test_config_path_from_env(monkeypatch, tmp_path):
    monkeypatch.delenv("STRATEGIST_CONFIG", raising=False)
    assert config_path() == Path("strategist.toml")
    monkeypatch.setenv("STRATEGIST_CONFIG", str(tmp_path / "other.toml"))
    assert config_path() == tmp_path / "other.toml"


# --- load_settings errors --------------------------------------------------------------------------


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, 'db = "unterminated\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert "invalid TOML" in str(info.value)


def test_unknown_role_key_names_file_and_field(tmp_path):
    path = write(
        tmp_path,
        """
        [roles.teacher]
        modle = "openai/typo"
    """,
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "roles.teacher.modle" in msg


def test_unknown_top_level_key_names_field(tmp_path):
    path = write(tmp_path, 'database = "x.db"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert "database" in str(info.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[roles.judge]\njson_mode = "xml"\n', "roles.judge.json_mode"),
        ("[roles.judge]\ntimeout = 0\n", "roles.judge.timeout"),
        ('[roles.teachr]\nmodel = "x"\n', "teachr"),
    ],
)
def test_invalid_values_name_the_field(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert field in str(info.value)


# --- resolve_db -------------------------------------------------------------------------------------


def test_resolve_db_precedence():
    file_settings = Settings(db="file.db")
    env = {"STRATEGIST_DB": "env.db"}
    assert resolve_db("flag.db", file_settings, env=env) == "flag.db"
    assert resolve_db(None, file_settings, env=env) == "env.db"
    assert resolve_db(None, file_settings, env={}) == "file.db"
    assert resolve_db(None, Settings(), env={}) == DEFAULT_DB
    assert resolve_db(None, file_settings, env={"STRATEGIST_DB": ""}) == "file.db"


def test_resolve_db_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("STRATEGIST_DB", "os-env.db")
    assert resolve_db(None, Settings(db="file.db")) == "os-env.db"


# --- default_config_text ------------------------------------------------------------------------------


def test_default_config_text_is_valid_settings(tmp_path):
    text = default_config_text("my-strategist.db")
    data = tomllib.loads(text)
    s = Settings.model_validate(data)
    assert s.db == "my-strategist.db"
    assert set(s.roles) == set(ROLES)
    assert all(s.role(r).model == DEFAULT_MODEL for r in ROLES)
    # and load_settings reads it back the same way
    path = tmp_path / "strategist.toml"
    path.write_text(text, encoding="utf-8")
    assert load_settings(path) == s


@pytest.mark.parametrize("db", [r"C:\data\strategist.db", 'my "quoted" file.db'])
def test_default_config_text_escapes_db_path(db):
    s = Settings.model_validate(tomllib.loads(default_config_text(db)))
    assert s.db == db


# --- resolve_model ---------------------------------------------------------------------------------


def test_embedded_smollm2_resolves_without_loading(monkeypatch):
    from strategist.models.embedded import EmbeddedModel

    llama_cpp = pytest.importorskip("llama_cpp")
    monkeypatch.setattr(llama_cpp, "Llama", lambda *a, **kw: pytest.fail("the model was loaded"))
    m = resolve_model("embedded/smollm2")
    assert isinstance(m, EmbeddedModel)
    assert m.name == "embedded/smollm2"


def test_unknown_embedded_model_is_unavailable():
    with pytest.raises(ModelUnavailableError) as info:
        resolve_model("embedded/other")
    assert info.value.model == "embedded/other"
    assert "embedded/smollm2" in str(info.value)


def test_openai_name_gives_the_native_adapter_and_litellm_on_request():
    from strategist.models.litellm_model import LiteLLMModel
    from strategist.models.openai_compat import OpenAICompatModel

    m = resolve_model("openai/x", api_base="http://127.0.0.1:9/v1", json_mode="object", timeout=5.0)
    assert isinstance(m, OpenAICompatModel)
    assert m.name == "openai/x"
    assert m.bases == ["http://127.0.0.1:9/v1"]
    assert (m.json_mode, m.timeout) == ("object", 5.0)
    d = resolve_model("openai/y", **RoleConfig().options())
    assert isinstance(d, OpenAICompatModel)
    assert (d.bases, d.json_mode, d.timeout) == (["https://api.openai.com/v1"], "auto", 120.0)
    options = RoleConfig(model="openai/y", client="litellm", api_base="http://h/v1").options()
    lt = resolve_model("openai/y", **options)
    assert isinstance(lt, LiteLLMModel)
    assert (lt.api_base, lt.json_mode, lt.timeout) == ("http://h/v1", "auto", 120.0)


def test_resolving_models_imports_neither_litellm_nor_llama_cpp():
    code = textwrap.dedent("""
        import json, sys
        from strategist.models import resolve_model
        m = resolve_model("litellm/openai/x", api_base="http://127.0.0.1:9/v1")
        e = resolve_model("embedded/smollm2")
        print(json.dumps({
            "type": type(m).__name__, "api_base": m.api_base, "embedded": type(e).__name__,
            "litellm": "litellm" in sys.modules, "llama_cpp": "llama_cpp" in sys.modules,
        }))
    """)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "type": "LiteLLMModel",
        "api_base": "http://127.0.0.1:9/v1",
        "embedded": "EmbeddedModel",
        "litellm": False,
        "llama_cpp": False,
    }


def test_register_model_overrides_and_unregister_restores():
    fake = ScriptedModel(name="fake")
    register_model("openai/gpt-4o", fake)
    try:
        assert resolve_model("openai/gpt-4o") is fake
    finally:
        unregister_model("openai/gpt-4o")
    assert resolve_model("openai/gpt-4o") is not fake


def test_register_model_can_override_the_embedded_name():
    fake = ScriptedModel(name="fake")
    register_model("embedded/smollm2", fake)
    try:
        assert resolve_model("embedded/smollm2") is fake
    finally:
        unregister_model("embedded/smollm2")
    assert type(resolve_model("embedded/smollm2")).__name__ == "EmbeddedModel"


def test_register_model_factory_is_called_per_resolve():
    made: list[ScriptedModel] = []

    def factory() -> ScriptedModel:
        made.append(ScriptedModel(name="made"))
        return made[-1]

    register_model("test/factory", factory)
    try:
        a, b = resolve_model("test/factory"), resolve_model("test/factory")
    finally:
        unregister_model("test/factory")
    assert [a, b] == made
    assert a is not b
    unregister_model("test/factory")  # unregistering twice is fine
