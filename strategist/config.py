"""Settings: which model each role uses and where the database lives.

Precedence, highest first: command-line flags, environment variables
(``STRATEGIST_<ROLE>_MODEL``, ``STRATEGIST_<ROLE>_API_BASE``, ``STRATEGIST_DB``), the
``strategist.toml`` file, then the defaults (the embedded model for every role).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import ConfigError, describe_validation_error

ROLES = ("teacher", "student", "customer", "judge")
Role = Literal["teacher", "student", "customer", "judge"]
DEFAULT_MODEL = "embedded/smollm2"
CONFIG_FILE = "strategist.toml"
DEFAULT_DB = "strategist.db"


class RoleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_MODEL
    # One base URL, or several endpoints serving the same model (a list, or URLs separated by
    # commas): each call goes to the one with the fewest calls in flight, and past one that fails.
    api_base: str | list[str] | None = None
    # The *name* of the environment variable holding the key: keys never live in files.
    api_key_env: str | None = None
    json_mode: Literal["auto", "schema", "object", "none"] = "auto"
    timeout: float = Field(default=120.0, gt=0)
    retries: int = Field(default=4, ge=0, le=20)  # for transient errors (429, 5xx, timeouts)
    # Which client reaches the model: "auto" (openai/, vllm/, sglang/, llamacpp/, ollama/ names
    # through the native OpenAI-compatible adapter, others through litellm) or "litellm" (always).
    client: Literal["auto", "litellm"] = "auto"
    # The GGUF file an embedded model runs (relative to the working directory); default: SmolLM2's.
    path: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _path_is_for_embedded_models(self) -> RoleConfig:
        if self.path is not None:
            if not self.model.startswith("embedded/"):
                raise PydanticCustomError(
                    "path_not_embedded",
                    "'path' is for embedded models only (model is '{model}')",
                    {"model": self.model},
                )
            if self.model.lower().endswith(".gguf"):
                raise PydanticCustomError(
                    "path_twice", "the model names its file already: give it in 'model' or 'path', not both"
                )
        return self

    @field_validator("api_base")
    @classmethod
    def _bases_are_urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        bases = value.split(",") if isinstance(value, str) else value or []
        for base in bases:
            if not base.strip().startswith(("http://", "https://")):
                raise PydanticCustomError(
                    "api_base_url", "'{base}' is not an http:// or https:// URL", {"base": base.strip()}
                )
        if isinstance(value, list) and not value:
            raise PydanticCustomError("api_base_empty", "the list of endpoints is empty")
        return value

    def options(self) -> dict[str, object]:
        options = self.model_dump(exclude={"model"})
        if options["path"] is None:  # only embedded models take one
            del options["path"]
        return options


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    db: str = DEFAULT_DB
    domain: str | None = None
    roles: dict[Role, RoleConfig] = Field(default_factory=dict)

    def role(self, role: str) -> RoleConfig:
        return self.roles.get(role, RoleConfig())  # type: ignore[call-overload]


def config_path() -> Path:
    return Path(os.environ.get("STRATEGIST_CONFIG", CONFIG_FILE))


def load_settings(path: Path | None = None) -> Settings:
    """Read strategist.toml if it exists; a missing file means all defaults."""
    path = path or config_path()
    if not path.exists():
        return Settings()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = describe_validation_error(str(path), exc)
        raise ConfigError(str(err)) from exc


def resolve_roles(
    flags: Mapping[str, str | None], settings: Settings, env: Mapping[str, str] | None = None
) -> dict[str, RoleConfig]:
    """Each role's model config: flag, then environment, then file, then default."""
    env = os.environ if env is None else env
    out: dict[str, RoleConfig] = {}
    for role in ROLES:
        cfg = settings.role(role).model_copy()
        prefix = f"STRATEGIST_{role.upper()}_"
        model = flags.get(role) or env.get(prefix + "MODEL")
        if model and model != cfg.model:
            # Another model than the file's: the file's api_base, key variable and JSON mode
            # belong to that other model, so they do not carry over.
            cfg = RoleConfig(model=str(model))
        if env.get(prefix + "API_BASE"):
            cfg.api_base = env[prefix + "API_BASE"]
        out[role] = cfg
    return out


def resolve_db(flag: str | None, settings: Settings, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return flag or env.get("STRATEGIST_DB") or settings.db


def default_config_text(db: str) -> str:
    return f'''# strategist settings. Flags and STRATEGIST_* environment variables override these.
db = {json.dumps(db)}
# domain = "northwind"

# Each role picks its model: "embedded/smollm2" (in-process, no key), "openai/MODEL" (OpenAI or
# any OpenAI-compatible server with api_base), "vllm/MODEL", "sglang/MODEL", "llamacpp/MODEL",
# "ollama/MODEL" (a local server on its default port), or any litellm name ("anthropic/...").
# Any GGUF file runs in-process too: model = "embedded/models/my-model.gguf", or keep
# model = "embedded/smollm2" and set path = "models/my-model.gguf".
[roles.teacher]
model = "{DEFAULT_MODEL}"
# model = "openai/gpt-4o"            # reads OPENAI_API_KEY from the environment

[roles.student]
model = "{DEFAULT_MODEL}"
# A self-hosted OpenAI-compatible server (several replicas of one model: a list of URLs):
# model = "openai/my-model"
# api_base = "http://127.0.0.1:8080/v1"    # or ["http://gpu1:8000/v1", "http://gpu2:8000/v1"]
# json_mode = "object"               # auto | schema | object | none

[roles.customer]
model = "{DEFAULT_MODEL}"

[roles.judge]
model = "{DEFAULT_MODEL}"
# api_key_env = "MY_JUDGE_KEY"       # name of the variable holding the key, never the key
'''
