"""StrategicBot: retrieval, the prompt the student gets, replies sync and async, and streaming;
on scripted models, and once on the real embedded model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from runtime_library import CONVERSATIONS, STRATEGIES, add_strategies

from strategist.errors import ModelError, StrategistError
from strategist.models import FunctionModel, ScriptedModel
from strategist.models.base import ChatModel, Completion, Message, Sampling
from strategist.runtime import StrategicBot, StrategyLibrary
from strategist.runtime.retrieval import estimate_tokens, strategy_prompt_text


@pytest.fixture
def ids(store, northwind):
    return add_strategies(store, northwind)


@pytest.fixture
def library(store, ids):
    lib = StrategyLibrary(store, domain="northwind")
    yield lib
    lib.close()


def echo_system(messages: list[Message], sampling: Sampling) -> str:
    """Replies with how many strategies its prompt listed, so a test sees what it was sent."""
    return f"I saw {messages[0]['content'].count('When:')} strategies."


def test_reply_sends_the_strategies_and_says_which(library, ids, northwind):
    student = ScriptedModel(["Please send a photo of the damage."], name="scripted/student")
    bot = StrategicBot(student=student, library=library, domain="northwind")
    reply = bot.reply(CONVERSATIONS["damaged"])
    assert reply.text == "Please send a photo of the damage."
    assert reply.strategies[0] == f"strategy:{ids['damaged']}@v1"
    assert reply.strategies == reply.retrieval.refs and reply.include_pending is False
    sent = student.calls[0]
    assert sent.system.startswith("You are")  # the domain's prompt: role and policy, then strategies
    assert northwind.policy.strip() in sent.system
    assert "<strategies>" in sent.system and STRATEGIES["damaged"][1] in sent.system
    assert sent.messages[1:] == CONVERSATIONS["damaged"]
    assert reply.messages == sent.messages
    assert reply.completion is not None and reply.model == "scripted/student"
    assert reply.as_message() == {"role": "assistant", "content": reply.text}
    assert reply.as_dict()["strategies"] == reply.strategies
    bot.close()


def test_own_system_prompt_replaces_the_conversations(library, ids, northwind):
    student = FunctionModel(echo_system)
    bot = StrategicBot(student, library, "northwind", system_prompt="You are Acme's helper.", k=2)
    convo = [{"role": "system", "content": "ignored"}, *CONVERSATIONS["backorder"]]
    reply = bot.reply(convo)
    system = student.calls[0].system
    assert system.startswith("You are Acme's helper.")
    assert northwind.policy.strip() not in system and "ignored" not in system
    assert [m["role"] for m in student.calls[0].messages] == ["system", "user"]
    assert reply.text == f"I saw {len(reply.strategies)} strategies."
    assert len(reply.strategies) == 2
    bot.close()


def test_without_own_prompt_the_conversations_system_message_is_the_base(library):
    student = FunctionModel(echo_system)
    bot = StrategicBot(student, library, "northwind")
    bot.reply([{"role": "system", "content": "Base prompt."}, *CONVERSATIONS["identity"]])
    assert student.calls[0].system.startswith("Base prompt.\n\nSTRATEGIES")
    bot.close()


async def test_areply_and_pending_strategies(library, ids):
    student = FunctionModel(echo_system)
    coupon = [{"role": "user", "content": "Any discount code or coupon?"}]
    plain = await StrategicBot(student, library, "northwind").areply(coupon)
    assert f"strategy:{ids['discount']}@v1" not in plain.strategies
    bot = StrategicBot(student, library, "northwind", include_pending=True)
    reply = await bot.areply(coupon)
    assert reply.strategies[0] == f"strategy:{ids['discount']}@v1"
    assert reply.include_pending is True and reply.as_dict()["include_pending"] is True
    assert STRATEGIES["discount"][1] in student.calls[-1].system


async def test_no_strategy_found_means_the_plain_policy_prompt(library, northwind):
    student = FunctionModel(echo_system)
    reply = await StrategicBot(student, library, "northwind").areply([{"role": "user", "content": "Hello!"}])
    assert reply.strategies == [] and reply.text == "I saw 0 strategies."
    assert "<strategies>" not in student.calls[0].system
    assert northwind.policy.strip() in student.calls[0].system


class PiecewiseModel(ChatModel):
    """Streams its reply word by word, as a real backend would."""

    name = "piecewise"

    def __init__(self, text: str) -> None:
        self.text = text
        self.sent: list[list[Message]] = []

    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> Completion:
        return Completion(self.text, self.name)

    async def stream(
        self, messages: Sequence[Message], sampling: Sampling | None = None
    ) -> AsyncIterator[str]:
        self.sent.append(list(messages))
        for word in self.text.split(" "):
            await asyncio.sleep(0)
            yield word + " "


async def test_astream_knows_the_strategies_before_the_first_piece(library, ids):
    model = PiecewiseModel("Send a photo within seven days please")
    stream = await StrategicBot(model, library, "northwind").astream(CONVERSATIONS["damaged"])
    assert stream.strategies[0] == f"strategy:{ids['damaged']}@v1"
    assert stream.text == "" and not stream.done
    pieces = [p async for p in stream]
    assert len(pieces) == 7 and stream.done
    assert stream.text.strip() == "Send a photo within seven days please"
    assert stream.reply.text == stream.text and stream.reply.strategies == stream.strategies
    assert STRATEGIES["damaged"][1] in model.sent[0][0]["content"]


def test_sync_stream_and_the_default_stream_of_any_model(library, ids):
    student = ScriptedModel(["One whole reply."])  # no stream() of its own: the default yields once
    bot = StrategicBot(student, library, "northwind")
    stream = bot.stream(CONVERSATIONS["backorder"])
    assert stream.strategies[0] == f"strategy:{ids['backorder']}@v1"
    assert list(stream) == ["One whole reply."]
    assert stream.reply.text == "One whole reply."
    assert len(student.calls) == 1
    bot.close()


class LoopBoundModel(ChatModel):
    """Works only on the event loop it was first used on, as model clients (httpx) do."""

    name = "loop-bound"

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.calls = 0

    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> Completion:
        loop = asyncio.get_running_loop()
        self.loop = self.loop or loop
        if loop is not self.loop:
            raise RuntimeError("bound to a different event loop")
        self.calls += 1
        listed = messages[0]["content"].count("When:")
        return Completion(f"reply {self.calls}: {listed} strategies", self.name)


def test_sync_reply_works_twice_in_a_row(library, ids):
    model = LoopBoundModel()
    bot = StrategicBot(model, library, "northwind", k=1)
    first = bot.reply(CONVERSATIONS["damaged"])
    second = bot.reply(CONVERSATIONS["backorder"])
    assert (first.text, second.text) == ("reply 1: 1 strategies", "reply 2: 1 strategies")
    assert first.strategies == [f"strategy:{ids['damaged']}@v1"]
    assert second.strategies == [f"strategy:{ids['backorder']}@v1"]
    assert list(bot.stream(CONVERSATIONS["identity"])) == ["reply 3: 1 strategies"]
    bot.close()


def test_the_sync_api_refuses_to_run_inside_an_event_loop(library):
    bot = StrategicBot(FunctionModel(echo_system), library, "northwind")

    async def inside() -> None:
        with pytest.raises(StrategistError, match="async"):
            bot.reply(CONVERSATIONS["damaged"])

    asyncio.run(inside())
    assert bot.reply(CONVERSATIONS["damaged"]).text.startswith("I saw")
    bot.close()


def test_model_and_library_by_name(tmp_path, northwind, register_scripted):
    from strategist.store import Store

    path = tmp_path / "lib.db"
    store = Store.open(path)
    ids = add_strategies(store, northwind)
    store.close()
    register_scripted("scripted/named", echo_system)
    bot = StrategicBot(student="scripted/named", library=str(path))
    reply = bot.reply(CONVERSATIONS["identity"])
    assert reply.model == "scripted/named" and bot.domain == "northwind"
    assert reply.strategies[0] == f"strategy:{ids['identity']}@v1"
    bot.close()  # flushes the counters and closes the library it opened
    check = Store.open(path)
    assert check.get_strategy(ids["identity"]).times_retrieved == 1
    check.close()


def test_bad_input_and_model_failures_are_strategist_errors(library):
    bot = StrategicBot(ScriptedModel([ModelError("scripted", "down")]), library, "northwind")
    with pytest.raises(StrategistError):
        bot.reply([{"content": "no role"}])
    with pytest.raises(StrategistError):
        bot.reply("not a list")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="down"):
        bot.reply(CONVERSATIONS["damaged"])
    with pytest.raises(StrategistError, match="no domain 'nowhere'"):
        StrategicBot(FunctionModel(echo_system), library, "nowhere")
    bot.close()


def test_token_budget_uses_the_students_tokenizer(library):
    class Counting(FunctionModel):
        def count_tokens(self, text: str) -> int | None:
            return len(text.split())

    bot = StrategicBot(Counting(echo_system), library, "northwind", budget=1000)
    reply = bot.reply(CONVERSATIONS["damaged"])
    for r in reply.retrieval.strategies:
        assert r.tokens == len(strategy_prompt_text(r.strategy).split())
    plain = StrategicBot(FunctionModel(echo_system), library, "northwind").reply(CONVERSATIONS["damaged"])
    for r in plain.retrieval.strategies:  # no tokenizer: the stated estimate
        assert r.tokens == estimate_tokens(strategy_prompt_text(r.strategy))
    bot.close()


@pytest.mark.embedded
async def test_streaming_on_the_embedded_model(library, ids):
    from strategist.errors import ModelUnavailableError
    from strategist.models.embedded import EmbeddedModel

    try:
        model = EmbeddedModel()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        # A short prompt of our own: the domain's policy would make each call several times slower.
        bot = StrategicBot(
            model,
            library,
            "northwind",
            "You are a support agent.",
            sampling=Sampling(temperature=0.0, max_tokens=16),
        )
        stream = await bot.astream(CONVERSATIONS["damaged"])
        assert stream.strategies[0] == f"strategy:{ids['damaged']}@v1"
        pieces = [p async for p in stream]
        assert len(pieces) > 3, "llama.cpp hands out tokens as it samples them"
        full = await model.complete(stream.messages, Sampling(temperature=0.0, max_tokens=16))
        assert "".join(pieces) == full.text  # same prompt, greedy: the same reply, in pieces
        # The budget was counted with SmolLM2's own tokenizer.
        for r in stream.retrieval.strategies:
            assert r.tokens == model.count_tokens(strategy_prompt_text(r.strategy))
        # Stopping a stream early frees the model for the next call.
        early = await bot.astream(CONVERSATIONS["backorder"])
        async for _ in early:
            break
        await early.aclose()
        again = await asyncio.wait_for(model.complete(CONVERSATIONS["backorder"], Sampling(max_tokens=4)), 30)
        assert again.completion_tokens > 0
    finally:
        await model.aclose()


def test_a_script_that_used_the_sync_api_exits(tmp_path, northwind):
    """The shared loop of the sync methods runs in a daemon thread: the process ends with its
    main thread instead of waiting for that loop forever."""
    import subprocess
    import sys

    from strategist.store import Store

    store = Store.open(tmp_path / "x.db")
    store.upsert_domain(northwind)
    store.close()
    script = (
        "from strategist.models import ScriptedModel\n"
        "from strategist.runtime import StrategicBot\n"
        f"bot = StrategicBot(ScriptedModel(default='hi'), {str(tmp_path / 'x.db')!r}, 'northwind')\n"
        "print(bot.reply([{'role': 'user', 'content': 'hello'}]).text)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "hi", out.stderr
