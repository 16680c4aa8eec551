"""Embedded models by file: the response cache keys on the model file, not on the name, and any
GGUF file can be named as an embedded model (``embedded/PATH.gguf``, or ``path`` in strategist.toml).

Nothing here runs llama.cpp: ``EmbeddedModel`` only checks at construction that its file exists
(and that llama_cpp is importable); the answers come from a stand-in for the model call."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from strategist.engine.cache import ResponseCache
from strategist.engine.ledger import Ledger
from strategist.errors import ConfigError, ModelUnavailableError
from strategist.models import Completion, FunctionModel, Sampling, resolve_model

pytest.importorskip("llama_cpp")

from strategist.models.embedded import EmbeddedModel

HELLO = [{"role": "user", "content": "Hello, where is my order?"}]


def _gguf(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + content)
    return path


def _answers_with(model: EmbeddedModel, text: str) -> EmbeddedModel:
    """Stand in for llama.cpp: this model object answers ``text`` to anything."""

    async def complete(messages, sampling=None):
        return Completion(text=text, model=model.name, completion_tokens=3)

    model.complete = complete  # type: ignore[method-assign]
    return model


async def _ask(store, model) -> tuple[str, Ledger]:
    """One call through a fresh run ledger with the store's response cache, as an eval run makes."""
    ledger = Ledger(store, None, cache=ResponseCache(store))
    reply = await ledger.wrap(model, "student").complete(HELLO, Sampling(temperature=0, seed=1))
    ledger.flush()
    return reply.text, ledger


async def test_another_model_file_under_the_same_name_does_not_replay_the_old_answers(
    store, tmp_path, monkeypatch
):
    old = _gguf(tmp_path / "old.gguf", b"old weights")
    new = _gguf(tmp_path / "new.gguf", b"new weights, a different file")
    monkeypatch.setenv("STRATEGIST_EMBEDDED_MODEL_PATH", str(old))
    first = resolve_model("embedded/smollm2")
    assert first.name == "embedded/smollm2"
    text, _ = await _ask(store, _answers_with(first, "answer of the old model"))
    assert text == "answer of the old model"

    # The same name, another file: its own answer, not the old file's from the cache.
    monkeypatch.setenv("STRATEGIST_EMBEDDED_MODEL_PATH", str(new))
    second = resolve_model("embedded/smollm2")
    assert second.name == "embedded/smollm2"
    text, ledger = await _ask(store, _answers_with(second, "answer of the new model"))
    assert text == "answer of the new model"
    assert (ledger.calls, ledger.cache_hits) == (1, 0)

    # The cache still works: the old file again replays its answer without a call.
    monkeypatch.setenv("STRATEGIST_EMBEDDED_MODEL_PATH", str(old))
    text, ledger = await _ask(store, _answers_with(resolve_model("embedded/smollm2"), "never asked"))
    assert text == "answer of the old model"
    assert (ledger.calls, ledger.cache_hits) == (0, 1)


def test_the_cache_identity_is_the_files_content(tmp_path):
    a = EmbeddedModel(path=_gguf(tmp_path / "a.gguf", b"weights A"))
    b = EmbeddedModel(path=_gguf(tmp_path / "b.gguf", b"weights B"))
    copy = EmbeddedModel(path=_gguf(tmp_path / "elsewhere" / "a-copy.gguf", b"weights A"))
    assert a.name == b.name == "embedded/smollm2"
    assert a.cache_identity != b.cache_identity
    assert a.cache_identity == copy.cache_identity  # the same bytes answer the same
    assert a.cache_identity != a.name
    # Other models keep keying on their name, and a run's wrapper passes the identity on.
    plain = FunctionModel(lambda m, s: "x", name="openai/gpt-4o")
    assert plain.cache_identity == "openai/gpt-4o"
    assert Ledger().wrap(a, "judge").cache_identity == a.cache_identity


async def test_the_same_file_under_another_name_replays_its_answers(store, tmp_path, monkeypatch):
    model_file = _gguf(tmp_path / "m.gguf", b"the weights")
    monkeypatch.setenv("STRATEGIST_EMBEDDED_MODEL_PATH", str(model_file))
    text, _ = await _ask(store, _answers_with(resolve_model("embedded/smollm2"), "the answer"))
    by_path = _answers_with(resolve_model(f"embedded/{model_file}"), "never asked")
    text, ledger = await _ask(store, by_path)
    assert text == "the answer" and (ledger.calls, ledger.cache_hits) == (0, 1)


async def test_a_file_rewritten_in_place_gets_a_new_identity(store, tmp_path):
    path = _gguf(tmp_path / "m.gguf", b"version one")
    text, _ = await _ask(store, _answers_with(EmbeddedModel(path=path), "one"))
    assert text == "one"
    _gguf(path, b"version two, longer")
    text, ledger = await _ask(store, _answers_with(EmbeddedModel(path=path), "two"))
    assert text == "two" and ledger.cache_hits == 0


def test_any_gguf_file_is_an_embedded_model_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_file = _gguf(tmp_path / "models" / "tiny.gguf", b"tiny")
    relative = resolve_model("embedded/models/tiny.gguf")
    assert isinstance(relative, EmbeddedModel)
    assert relative.name == "embedded/models/tiny.gguf"
    assert relative.path == Path("models/tiny.gguf")
    absolute = resolve_model(f"embedded/{model_file}")  # embedded//abs/path.gguf
    assert isinstance(absolute, EmbeddedModel) and absolute.path == model_file
    assert absolute._llama_obj is None  # nothing is loaded before the first call
    assert absolute.cache_identity == relative.cache_identity


def test_an_unknown_model_file_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelUnavailableError) as info:
        resolve_model("embedded/models/missing.gguf")
    assert info.value.model == "embedded/models/missing.gguf"
    assert str(info.value) == (
        "model embedded/models/missing.gguf: model file not found: models/missing.gguf"
    )
    with pytest.raises(ModelUnavailableError, match="model file not found"):
        resolve_model("embedded/smollm2", path=str(tmp_path / "nowhere.gguf"))
    with pytest.raises(ModelUnavailableError) as info:
        resolve_model("embedded/other")
    assert "embedded/smollm2" in str(info.value) and "\n" not in str(info.value)


def test_a_roles_path_in_the_settings_file_picks_the_file(tmp_path, monkeypatch):
    from strategist.config import load_settings, resolve_roles

    monkeypatch.chdir(tmp_path)
    _gguf(tmp_path / "models" / "student.gguf", b"student weights")
    (tmp_path / "strategist.toml").write_text(
        textwrap.dedent("""
            [roles.student]
            model = "embedded/smollm2"
            path = "models/student.gguf"
        """)
    )
    settings = load_settings(tmp_path / "strategist.toml")
    cfg = resolve_roles({}, settings, env={})["student"]
    assert cfg.options()["path"] == "models/student.gguf"
    model = resolve_model(cfg.model, **cfg.options())
    assert isinstance(model, EmbeddedModel) and model.path == Path("models/student.gguf")
    # Roles without a path keep the default file and pass no path option.
    assert "path" not in resolve_roles({}, settings, env={})["judge"].options()
    # A flag naming another model brings none of the file's options, the path included.
    assert resolve_roles({"student": "embedded/smollm2-other"}, settings, env={})["student"].path is None


@pytest.mark.parametrize(
    ("role", "problem"),
    [
        ('model = "openai/gpt-4o"\npath = "m.gguf"', "for embedded models only"),
        ('model = "embedded/a.gguf"\npath = "b.gguf"', "not both"),
        ('model = "embedded/smollm2"\npath = ""', "path"),
    ],
)
def test_a_misplaced_path_is_a_one_line_config_error(tmp_path, role, problem):
    from strategist.config import load_settings

    toml = tmp_path / "strategist.toml"
    toml.write_text(f"[roles.judge]\n{role}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(toml)
    message = str(info.value)
    assert message.startswith(f"{toml}: roles.judge") and problem in message and "\n" not in message
