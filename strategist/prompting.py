"""One loader for every prompt. Templates are Jinja2 files in strategist/prompts/; a directory in
$STRATEGIST_PROMPTS_DIR (or passed to ``set_prompt_dirs``) overrides them file by file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2 import UndefinedError as _UndefinedError

from .errors import ConfigError

PROMPTS_DIR = Path(__file__).parent / "prompts"
_extra_dirs: tuple[str, ...] = ()


def set_prompt_dirs(*dirs: str | Path) -> None:
    """Look in ``dirs`` (in order) before the built-in prompts."""
    global _extra_dirs
    _extra_dirs = tuple(str(d) for d in dirs)
    _environment.cache_clear()


@lru_cache(maxsize=4)
def _environment_for(dirs: tuple[str, ...], reload: bool = False) -> Environment:
    loaders = [FileSystemLoader(d) for d in dirs] + [FileSystemLoader(str(PROMPTS_DIR))]
    # Prompts are plain text for models, not HTML: no autoescaping.
    return Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
        # The prompts are read once per process: no stat() of the file at every render (one per
        # model call showed in the concurrency profile); an edited prompt takes effect at the next
        # start. A user's own template file (render_file) is re-read when it changes.
        auto_reload=reload,
    )


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env_dir = os.environ.get("STRATEGIST_PROMPTS_DIR")
    return _environment_for(_extra_dirs + ((env_dir,) if env_dir else ()))


def render(name: str, **variables: Any) -> str:
    """Render ``name`` (e.g. ``"student_system.j2"``); a missing variable is an error."""
    return _render(_environment(), name, name, variables)


def render_file(path: Path, **variables: Any) -> str:
    """Render a user's own template file with the same settings (StrictUndefined); the built-in
    prompts stay reachable from it (``{% include "bot_system.j2" %}``)."""
    return _render(_environment_for((str(path.parent),), reload=True), path.name, str(path), variables)


def _render(env: Environment, name: str, shown: str, variables: dict[str, Any]) -> str:
    """A template's text; every problem with it is one ConfigError naming the file (and line)."""
    try:
        return env.get_template(name).render(**variables).strip()
    except TemplateNotFound as exc:
        raise ConfigError(f"prompt template not found: {shown}") from exc
    except TemplateSyntaxError as exc:
        where = exc.filename if exc.filename and exc.filename != name else shown
        raise ConfigError(f"prompt template {where}: line {exc.lineno}: {exc.message}") from exc
    except _UndefinedError as exc:
        raise ConfigError(f"prompt template {shown}: {exc.message}") from exc
