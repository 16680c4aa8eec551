"""Retrieval on a hand-built library: SQLite FTS5 BM25 (and the Python BM25 used without it),
budgets, statuses, ties, batched usage counters, the prompt the strategies go into."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from runtime_library import CONVERSATIONS, STRATEGIES, add_strategies, set_status

from strategist.core.dialogue import StrategyText
from strategist.errors import ConfigError, InputError, StrategistError
from strategist.runtime import FunctionEmbedder, StrategyLibrary
from strategist.runtime.rankers import Fts5Ranker, PythonRanker
from strategist.runtime.retrieval import estimate_tokens, strategy_prompt_text
from strategist.runtime.text import conversation_segments, query_terms, stem, words

ROOT = Path(__file__).resolve().parent.parent
TAU2 = ROOT.parent / "shared" / "data" / "tau2-retail"


@pytest.fixture
def ids(store, northwind):
    return add_strategies(store, northwind)


@pytest.fixture
def library(store, ids):
    lib = StrategyLibrary(store, domain="northwind", flush_every=10_000, flush_seconds=3600)
    yield lib
    lib.close()


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# -- ranking ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", sorted(CONVERSATIONS))
def test_the_relevant_strategy_comes_first(library, ids, key):
    found = library.retrieve(CONVERSATIONS[key])
    assert found.ranker == "fts5"
    assert found.strategies, "nothing retrieved"
    assert found.strategies[0].strategy.id == ids[key]
    scores = [r.score for r in found.strategies]
    assert scores == sorted(scores, reverse=True)
    assert all(s > 0 for s in scores)
    assert found.refs[0] == f"strategy:{ids[key]}@v1"


def test_the_latest_customer_message_weighs_most(library, ids):
    earlier = "Also, can I swap these boots for another size?"
    latest = "But first: the stove arrived broken and damaged."
    convo = [
        {"role": "user", "content": earlier},
        {"role": "assistant", "content": "Sure, I can help with that."},
        {"role": "user", "content": latest},
    ]
    assert library.retrieve(convo).strategies[0].strategy.id == ids["damaged"]
    swapped = [convo[0] | {"content": latest}, convo[1], convo[2] | {"content": earlier}]
    assert library.retrieve(swapped).strategies[0].strategy.id == ids["size_exchange"]


def test_system_messages_are_not_part_of_the_query(library):
    convo = [{"role": "system", "content": "warranty zipper supervisor coupon tent"}, *user("hello")]
    assert library.retrieve(convo).strategies == []


def test_nothing_relevant_retrieves_nothing(library):
    found = library.retrieve(user("Hello there, thanks a lot!"))
    assert found.strategies == [] and found.refs == [] and found.tokens == 0


def test_k_limits_the_count(library):
    convo = user("refund card boots size tent damaged photo order email")
    assert len(library.retrieve(convo, k=2).strategies) == 2
    assert library.retrieve(convo, k=0).strategies == []


def test_the_budget_is_respected_and_long_strategies_are_skipped_not_stopped_at(library, ids):
    def counter(text: str) -> int:  # the refund strategy is long, every other one short
        return 100 if "card refund" in text else 10

    convo = user("the box was damaged") + CONVERSATIONS["late_refund"]
    full = library.retrieve(convo, budget=None, k=4, token_counter=counter)
    assert full.strategies[0].strategy.id == ids["late_refund"] and len(full.strategies) >= 3
    tight = library.retrieve(convo, budget=25, k=4, token_counter=counter)
    # The first does not fit and is skipped; the next two fit; a third would pass 25.
    assert tight.refs == full.refs[1:3]
    assert tight.tokens == 20
    for budget in (0, 5, 40, 80, 150):
        assert library.retrieve(convo, budget=budget, k=8).tokens <= budget
    assert library.retrieve(convo, budget=0).strategies == []


def test_tokens_come_from_the_counter_given(library):
    words_counter = lambda text: len(text.split())  # noqa: E731
    found = library.retrieve(CONVERSATIONS["damaged"], token_counter=words_counter)
    for r in found.strategies:
        assert r.tokens == len(strategy_prompt_text(r.strategy).split())
    default = library.retrieve(CONVERSATIONS["damaged"])
    for r in default.strategies:  # the stated estimate: about 4 characters a token
        assert r.tokens == estimate_tokens(strategy_prompt_text(r.strategy))


def test_only_approved_strategies_unless_pending_is_asked_for(library, ids):
    coupon = user("Can I have a discount code or a coupon?")
    assert ids["discount"] not in [r.strategy.id for r in library.retrieve(coupon).strategies]
    found = library.retrieve(coupon, include_pending=True)
    assert found.strategies[0].strategy.id == ids["discount"]
    assert found.strategies[0].status == "pending"
    assert found.include_pending is True and found.as_dict()["include_pending"] is True
    # Rejected and retired never come back, even with pending included.
    for key, text in (
        ("supervisor", "I demand a supervisor or a manager now"),
        ("warranty", "warranty zipper"),
    ):
        got = library.retrieve(user(text), include_pending=True)
        assert ids[key] not in [r.strategy.id for r in got.strategies]


def test_a_status_change_by_any_code_is_seen_at_once(store, library, ids):
    convo = CONVERSATIONS["backorder"]
    assert library.retrieve(convo).strategies[0].strategy.id == ids["backorder"]
    set_status(store, ids["backorder"], "retired")
    assert ids["backorder"] not in [r.strategy.id for r in library.retrieve(convo).strategies]
    set_status(store, ids["warranty"], "approved")
    assert library.retrieve(user("warranty for a broken zipper")).strategies[0].strategy.id == ids["warranty"]


def test_other_domains_are_not_retrieved(store, library, northwind):
    other = northwind.model_copy(update={"id": "acme", "name": "Acme"})
    store.upsert_domain(other)
    acme = store.add_strategy(
        "acme",
        StrategyText(trigger="back-ordered tent ship date", guidance="back-ordered tent ship date"),
        provenance={},
        evidence={},
        author="t",
        status="approved",
    )
    assert acme.id not in [r.strategy.id for r in library.retrieve(CONVERSATIONS["backorder"]).strategies]
    assert library.retrieve(CONVERSATIONS["backorder"], domain="acme").strategies[0].strategy.id == acme.id


def test_ties_are_broken_by_id_every_time(store, ids):
    text = StrategyText(trigger="A customer asks about kayak paddles", guidance="Paddles ship separately.")
    made = [
        store.add_strategy("northwind", text, provenance={}, evidence={}, author="t", status="approved").id
        for _ in range(4)
    ]
    lib = StrategyLibrary(store, domain="northwind", k=4)
    results = [lib.retrieve(user("Where are my kayak paddles?")) for _ in range(5)]
    lib.close()
    first = results[0]
    assert [r.strategy.id for r in first.strategies] == sorted(made)
    assert len({r.score for r in first.strategies}) == 1  # a real tie
    assert all(r.refs == first.refs for r in results)


def test_the_index_follows_inserts_edits_and_deletes(store, library, ids):
    convo = user("My kayak paddle snapped in half")
    old_words = user("before looking anything up")
    assert library.retrieve(convo).strategies == []
    assert library.retrieve(old_words).refs == [f"strategy:{ids['identity']}@v1"]
    with store.engine.begin() as conn:  # an edit, as any other code might make it
        conn.exec_driver_sql(
            "UPDATE strategies SET guidance = 'A snapped kayak paddle is replaced for free.', version = 2 "
            "WHERE id = ?",
            (ids["identity"],),
        )
    found = library.retrieve(convo)
    assert found.refs == [f"strategy:{ids['identity']}@v2"]
    assert library.retrieve(old_words).strategies == []
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM reviews WHERE strategy_id = ?", (ids["identity"],))
        conn.exec_driver_sql("DELETE FROM strategy_versions WHERE strategy_id = ?", (ids["identity"],))
        conn.exec_driver_sql("DELETE FROM strategies WHERE id = ?", (ids["identity"],))
    assert library.retrieve(convo).strategies == []
    with store.engine.begin() as conn:
        # FTS5's own consistency check of an external-content index against its table.
        conn.exec_driver_sql("INSERT INTO strategies_fts(strategies_fts, rank) VALUES ('integrity-check', 1)")


def test_usage_counter_updates_do_not_reindex(store, library, ids):
    library.optimize()
    library.retrieve(CONVERSATIONS["damaged"])
    library.flush()
    assert _times_retrieved(store)[ids["damaged"]] == 1
    # A write that re-indexed a row would have added a segment to the merged index.
    assert store.search_index_segments() == 1


# -- FTS5 and the Python ranking agree; the stemmer agrees with FTS5's --------------------------------
def test_fts5_and_python_bm25_give_the_same_ranking(store, northwind):
    # One domain, every strategy approved: both compute BM25 over the same documents.
    add_strategies(store, northwind, [k for k, v in STRATEGIES.items() if v[2] == "approved"])
    fts = StrategyLibrary(store, domain="northwind", k=5, budget=None)
    py = StrategyLibrary(store, domain="northwind", k=5, budget=None, ranker=PythonRanker(store))
    convos = [*CONVERSATIONS.values(), user("refund for damaged boots in another size, order email")]
    for convo in convos:
        a, b = fts.retrieve(convo), py.retrieve(convo)
        assert a.ranker == "fts5" and b.ranker == "python"
        assert a.refs == b.refs
        assert [r.score for r in a.strategies] == pytest.approx([r.score for r in b.strategies], rel=1e-9)
    fts.close()
    py.close()


def _corpus_words() -> list[str]:
    text = (ROOT / "scenarios" / "northwind" / "domain.yaml").read_text()
    text += (ROOT / "scenarios" / "northwind" / "scenarios.yaml").read_text()
    if (TAU2 / "policy.md").exists():
        text += (TAU2 / "policy.md").read_text() + (TAU2 / "tasks.json").read_text()[:400_000]
    text += " ".join(" ".join(v[:2]) for v in STRATEGIES.values())
    text += " caresses ponies relational hopefulness electricity adjustable sensibility rolled hopping"
    return sorted(set(words(text)))


def test_python_stemmer_matches_fts5_porter():
    vocabulary = _corpus_words()
    assert len(vocabulary) > 500
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(w, tokenize='porter unicode61 remove_diacritics 2')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
    db.executemany("INSERT INTO t(rowid, w) VALUES (?, ?)", list(enumerate(vocabulary, 1)))
    fts = dict(db.execute("SELECT doc, term FROM v"))
    wrong = [(w, fts[i], stem(w)) for i, w in enumerate(vocabulary, 1) if fts[i] != stem(w)]
    assert wrong == []


def test_words_are_split_and_folded_like_unicode61():
    assert words("Café NAÏVE, order NW-12345; 30-day") == [
        "cafe",
        "naive",
        "order",
        "nw",
        "12345",
        "30",
        "day",
    ]


# -- the query ------------------------------------------------------------------------------------
def test_query_weights_the_latest_customer_message_and_skips_noise():
    convo = [
        {"role": "system", "content": "policy refund"},
        {"role": "user", "content": "Is my jacket back-ordered?"},
        {"role": "assistant", "content": "Let me check the back-order."},
        {"role": "user", "content": [{"type": "text", "text": "Please refund order 12345678 now"}]},
    ]
    segments = conversation_segments(convo)
    assert segments[0] == ("Please refund order 12345678 now", 2)
    terms = {t.stem: t.weight for t in query_terms(segments)}
    assert terms["refund"] == 2 and terms["order"] == 2
    assert terms["jacket"] == 1 and terms["back"] == 1
    assert "12345678" not in terms  # identifiers are not situations
    assert "pleas" not in terms and "now" not in terms and "polici" not in terms


def test_bad_messages_are_input_errors(library):
    for bad in ("hello", [{"content": "no role"}], [{"role": "user", "content": 5}], ["text"]):
        with pytest.raises(InputError):
            library.retrieve(bad)  # type: ignore[arg-type]
    with pytest.raises(StrategistError):
        library.retrieve(user("x"), k=-1)


def test_the_domain_is_the_only_one_or_must_be_named(store, ids, northwind):
    lib = StrategyLibrary(store)
    assert lib.retrieve(CONVERSATIONS["damaged"]).domain == "northwind"
    store.upsert_domain(northwind.model_copy(update={"id": "acme"}))
    with pytest.raises(StrategistError, match="several domains"):
        StrategyLibrary(store).retrieve(CONVERSATIONS["damaged"])


# -- larger libraries: the common-terms query ---------------------------------------------------------
def _large_library(store, northwind) -> None:
    """400 refund strategies in northwind; 'voucher' is in a third of them (common, yet not
    in half), 'refund' in all of them."""
    store.upsert_domain(northwind)
    store.upsert_domain(northwind.model_copy(update={"id": "acme"}))
    filler = [
        {
            "domain_id": "northwind",
            "trigger": f"A customer asks about a refund for order type {i}",
            "guidance": f"Refund policy variant {i}" + (": a voucher may do." if i % 3 == 0 else "."),
            "example": "",
            "status": "approved",
            "version": 1,
            "provenance": "{}",
            "evidence": "{}",
            "times_retrieved": 0,
            "created_at": "2026-01-01 00:00:00",
            "updated_at": "2026-01-01 00:00:00",
        }
        for i in range(400)
    ]
    cols = ", ".join(f'"{c}"' for c in filler[0])
    marks = ", ".join(f":{c}" for c in filler[0])
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO strategies ({cols}) VALUES ({marks})"), filler)


def _add(store, domain: str, trigger: str, guidance: str = "Be kind.") -> int:
    text = StrategyText(trigger=trigger, guidance=guidance)
    return store.add_strategy(domain, text, provenance={}, evidence={}, author="t", status="approved").id


def test_common_terms_only_score_strategies_that_have_a_selective_term(store, northwind):
    _large_library(store, northwind)
    special = _add(store, "northwind", "A customer wants a refund for a Trailblazer jacket")
    _add(store, "acme", "A customer asks about a zeppelin")
    lib = StrategyLibrary(store, domain="northwind", k=3, budget=None)
    assert lib.store.term_document_counts(["voucher"])["voucher"] > Fts5Ranker.ROW_BUDGET  # a common word
    found = lib.retrieve(user("I want a refund on my card for the Trailblazer jacket order"))
    assert found.strategies[0].strategy.id == special
    # No rare word at all: strategies with both words come first (an AND keeps FTS5 from
    # scoring every strategy that has either).
    both = lib.retrieve(user("a voucher for a refund"))
    assert len(both.strategies) == 3
    assert all("voucher" in r.strategy.guidance for r in both.strategies)
    # The rarest word is only in another domain: commoner words are promoted until 3 are found.
    promoted = lib.retrieve(user("a zeppelin voucher, or a refund?"))
    assert len(promoted.strategies) == 3
    assert all("voucher" in r.strategy.guidance for r in promoted.strategies)
    lib.close()


def test_common_terms_still_add_to_the_score_in_a_large_library(store, northwind):
    """Among the strategies a selective word finds, one that also has a common query word ranks
    higher: pruning decides which strategies are scored, never which words count."""
    _large_library(store, northwind)
    parka = "A Trailblazer parka came late"
    with_common = _add(store, "northwind", parka, "A voucher is owed for the delay.")
    without = _add(store, "northwind", parka, "An apology is owed for it.")
    lib = StrategyLibrary(store, domain="northwind", k=2, budget=None)
    found = lib.retrieve(user("My Trailblazer parka: can I get a voucher?"))
    assert [r.strategy.id for r in found.strategies] == [with_common, without]
    assert found.strategies[0].score > found.strategies[1].score
    lib.close()


def test_strategies_stored_before_the_index_existed_are_indexed(tmp_path, northwind):
    from datetime import UTC, datetime

    from strategist.store import Store, make_engine, migrations

    path = tmp_path / "old.db"
    engine = make_engine(path)
    migrations.migrate(engine, until="m001_initial")  # a database from before migration m002
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO domains (id, name, spec, created_at, updated_at) "
                "VALUES ('northwind', 'N', :s, :t, :t)"
            ),
            {"s": json.dumps(northwind.model_dump(mode="json")), "t": datetime.now(UTC)},
        )
        ids = {}
        for key, (trigger, guidance, status) in STRATEGIES.items():
            ids[key] = conn.execute(
                sa.text(
                    'INSERT INTO strategies (domain_id, "trigger", guidance, example, status, version, '
                    "provenance, evidence, times_retrieved, created_at, updated_at) VALUES "
                    "('northwind', :tr, :gu, '', :st, 1, '{}', '{}', 0, :t, :t)"
                ),
                {"tr": trigger, "gu": guidance, "st": status, "t": datetime.now(UTC)},
            ).lastrowid
    engine.dispose()
    upgraded = Store.open(path)
    assert upgraded.has_search_index()
    lib = StrategyLibrary(upgraded, domain="northwind")
    for key, convo in CONVERSATIONS.items():
        assert lib.retrieve(convo).strategies[0].strategy.id == ids[key]
    lib.close()
    upgraded.close()


def test_optimize_merges_the_index_into_one_segment(tmp_path, northwind):
    from strategist.store import Store

    path = tmp_path / "lib.db"
    store = Store.open(path)
    add_strategies(store, northwind)  # one transaction, so one new segment, per strategy
    assert store.search_index_segments() > 1
    store.close()
    lib = StrategyLibrary.open(path)  # merges on open
    assert lib.store.search_index_segments() == 1
    assert lib.optimize(only_if_needed=True) is False
    assert lib.retrieve(CONVERSATIONS["damaged"]).strategies
    lib.close()
    url_lib = StrategyLibrary.open(f"sqlite:///{path}", domain="northwind")
    assert url_lib.retrieve(CONVERSATIONS["backorder"]).strategies
    url_lib.close()


# -- usage counters -----------------------------------------------------------------------------------
def _times_retrieved(store) -> dict[int, int]:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, times_retrieved FROM strategies")).all())


def test_usage_counters_are_kept_in_memory_and_written_in_one_batch(store, ids):
    lib = StrategyLibrary(store, domain="northwind", flush_every=10_000, flush_seconds=3600)
    updates: list[str] = []
    sa.event.listen(
        store.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *a: (
            updates.append(statement) if statement.startswith("UPDATE") else None
        ),
    )
    for _ in range(5):
        lib.retrieve(CONVERSATIONS["damaged"])
    lib.retrieve(CONVERSATIONS["backorder"])
    assert set(_times_retrieved(store).values()) == {0}, "written before the batch was due"
    assert lib.usage.pending[ids["damaged"]] == 5
    assert updates == []
    lib.flush()
    counts = _times_retrieved(store)
    assert counts[ids["damaged"]] == 5 and counts[ids["backorder"]] >= 1
    assert len(updates) == 1  # one executemany for every strategy
    assert lib.usage.pending == {} and lib.usage.flushes == 1
    lib.retrieve(CONVERSATIONS["damaged"])
    lib.close()  # closing writes what is left
    assert _times_retrieved(store)[ids["damaged"]] == 6


def _wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_usage_counters_flush_in_the_background_when_due(store, ids):
    lib = StrategyLibrary(store, domain="northwind", k=1, flush_every=4, flush_seconds=3600)
    for _ in range(12):
        lib.retrieve(CONVERSATIONS["identity"])
    # Due after 4: a background thread writes, retrieval never waits for the database.
    assert _wait_for(lambda: _times_retrieved(store)[ids["identity"]] >= 4)
    assert 1 <= lib.usage.flushes < 12  # batches, not one write per retrieval
    lib.close()
    assert _times_retrieved(store)[ids["identity"]] == 12


def test_usage_counters_flush_when_old_enough(store, ids):
    lib = StrategyLibrary(store, domain="northwind", k=1, flush_every=10_000, flush_seconds=0.05)
    lib.retrieve(CONVERSATIONS["damaged"])
    time.sleep(0.1)
    lib.retrieve(CONVERSATIONS["damaged"])  # the first count is old enough: this one sends both
    assert _wait_for(lambda: _times_retrieved(store)[ids["damaged"]] == 2)
    lib.close()


def test_on_any_database(any_store, northwind):
    """SQLite ranks with FTS5; PostgreSQL with BM25 in Python, refreshed when strategies change."""
    ids = add_strategies(any_store, northwind)
    lib = StrategyLibrary(any_store, domain="northwind", flush_every=10_000)
    expected = "fts5" if any_store.engine.dialect.name == "sqlite" else "python"
    used: Counter[int] = Counter()
    for key, convo in CONVERSATIONS.items():
        found = lib.retrieve(convo)
        assert found.ranker == expected
        assert found.strategies[0].strategy.id == ids[key]
        used.update(r.strategy.id for r in found.strategies)
    set_status(any_store, ids["discount"], "approved")
    if isinstance(lib.ranker, PythonRanker):
        lib.ranker.check_every = 0  # the cached index is checked against the table every call
    got = lib.retrieve(user("a discount code or coupon please"))
    assert got.strategies[0].strategy.id == ids["discount"]
    used.update(r.strategy.id for r in got.strategies)
    lib.close()
    written = _times_retrieved(any_store)
    assert {i: n for i, n in written.items() if n} == dict(used)


# -- embeddings ------------------------------------------------------------------------------------------
def _topic_vector(text: str) -> list[float]:
    t = text.lower()
    return [float("photo" in t or "broken" in t), float("size" in t), float("refund" in t), 0.1]


def test_embeddings_rerank_the_lexical_hits(store, ids):
    embedder = FunctionEmbedder(lambda texts: [_topic_vector(t) for t in texts], name="topics")
    lib = StrategyLibrary(store, domain="northwind", k=2, budget=None, embedder=embedder)
    convo = user("I want a refund to my card, it came broken")
    pool = StrategyLibrary(store, domain="northwind", k=20, budget=None).retrieve(convo)
    assert pool.strategies[0].strategy.id == ids["late_refund"]  # by words alone
    found = lib.retrieve(convo)
    assert found.ranker == "fts5+embeddings"
    assert found.strategies[0].strategy.id == ids["damaged"]  # by meaning (the fake's idea of it)
    assert set(found.refs) <= set(pool.refs)  # re-ranking only reorders what BM25 found
    assert found.strategies[0].score == pytest.approx(1.0)  # cosine similarity
    assert found.strategies[0].score >= found.strategies[1].score
    assert found.strategies[0].bm25 == pytest.approx(
        next(r.bm25 for r in pool.strategies if r.strategy.id == ids["damaged"])
    )
    # Strategy vectors are cached by (id, version): a second retrieval embeds only the query.
    lib.retrieve(convo)
    assert len(embedder.calls[-1]) == 1
    lib.close()


class LoopBoundEmbedder:
    """An Embedder that, like an HTTP client's connection pool, works only on the event loop it was
    first used on."""

    name = "loop-bound"

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.calls = 0

    async def embed(self, texts):
        loop = asyncio.get_running_loop()
        self.loop = self.loop or loop
        if loop is not self.loop:
            raise RuntimeError("bound to a different event loop")
        self.calls += 1
        await asyncio.sleep(0)
        return [_topic_vector(t) for t in texts]


def test_sync_retrieval_with_embeddings_works_every_time(store, ids):
    embedder = LoopBoundEmbedder()
    lib = StrategyLibrary(store, domain="northwind", k=2, budget=None, embedder=embedder)
    convo = user("I want a refund to my card, it came broken")
    first, second = lib.retrieve(convo), lib.retrieve(convo)
    assert embedder.calls == 2
    for found in (first, second):
        assert found.ranker == "fts5+embeddings"
        assert found.strategies[0].strategy.id == ids["damaged"]
    assert second.refs == first.refs
    assert lib.augment(convo).refs == first.refs
    lib.close()


async def test_embeddings_from_sync_code_inside_an_event_loop_point_to_aretrieve(store, ids):
    embedder = FunctionEmbedder(lambda texts: [_topic_vector(t) for t in texts])
    lib = StrategyLibrary(store, domain="northwind", embedder=embedder)
    with pytest.raises(StrategistError, match="aretrieve"):
        lib.retrieve(CONVERSATIONS["damaged"])
    found = await lib.aretrieve(CONVERSATIONS["damaged"])
    assert found.strategies[0].strategy.id == ids["damaged"]
    lib.close()


# -- the prompt ---------------------------------------------------------------------------------------
def test_augment_replaces_the_system_message_with_it_plus_the_strategies(library, ids):
    convo = [{"role": "system", "content": "You are Acme's bot. Be brief."}, *CONVERSATIONS["damaged"]]
    out = library.augment(convo)
    assert out.refs[0] == f"strategy:{ids['damaged']}@v1"
    assert convo[0]["content"] == "You are Acme's bot. Be brief."  # the input is not modified
    system = out[0]["content"]
    assert system.startswith("You are Acme's bot. Be brief.")
    assert "<strategies>" in system and STRATEGIES["damaged"][1] in system
    assert out[1:] == convo[1:]
    assert json.loads(json.dumps(out)) == list(out)  # plain dicts, ready for any client


def test_augment_without_a_system_message_uses_the_domain_prompt(library, northwind):
    out = library.augment(CONVERSATIONS["backorder"])
    assert out[0]["role"] == "system"
    assert northwind.policy.strip() in out[0]["content"]
    assert STRATEGIES["backorder"][1] in out[0]["content"]
    assert out[1:] == CONVERSATIONS["backorder"]
    mine = library.augment(CONVERSATIONS["backorder"], system_prompt="Mine.")
    assert mine[0]["content"].startswith("Mine.") and northwind.policy.strip() not in mine[0]["content"]


def test_a_user_template_file_renders_the_prompt(store, ids, tmp_path):
    tpl = tmp_path / "mine.j2"
    tpl.write_text(
        "{{ system_prompt or domain.company }}\n"
        "{% for s in strategies %}* {{ s.trigger }} -> {{ s.guidance }}\n{% endfor %}"
    )
    lib = StrategyLibrary(store, domain="northwind", template=tpl)
    out = lib.augment(CONVERSATIONS["damaged"])
    assert out[0]["content"].startswith("Northwind Outfitters\n* " + STRATEGIES["damaged"][0])
    tpl.write_text("{{ no_such_variable }}")
    with pytest.raises(ConfigError, match="no_such_variable"):
        lib.augment(CONVERSATIONS["damaged"])
    with pytest.raises(ConfigError, match="not found"):
        StrategyLibrary(store, template=tmp_path / "missing.j2")
    lib.close()


async def test_async_retrieval_matches_sync(library):
    a = await library.aretrieve(CONVERSATIONS["identity"])
    b = library.retrieve(CONVERSATIONS["identity"])
    assert a.refs == b.refs
    out = await library.aaugment(CONVERSATIONS["identity"])
    assert out.refs == b.refs


def test_retrieval_as_dict_is_json(library):
    data = library.retrieve(CONVERSATIONS["late_refund"]).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["ranker"] == "fts5" and data["refs"] and data["strategies"][0]["score"] > 0


def test_concurrent_async_retrievals(library):
    async def many() -> list[list[str]]:
        return [r.refs for r in await asyncio.gather(*(library.aretrieve(c) for c in CONVERSATIONS.values()))]

    assert asyncio.run(many()) == [library.retrieve(c).refs for c in CONVERSATIONS.values()]


def test_a_library_of_one_strategy_still_retrieves_it(tmp_path, northwind):
    """In a tiny library every shared word is 'common' to BM25 (its weight floored at 1e-6); the
    minimum score must not hide a plain match there."""
    from strategist.core.dialogue import StrategyText
    from strategist.runtime.library import StrategyLibrary
    from strategist.store import Store

    store = Store.open(tmp_path / "one.db")
    store.upsert_domain(northwind)
    store.add_strategy(
        northwind.id,
        StrategyText(
            trigger="A customer asks for a cash refund after 30 days",
            guidance="Offer store credit for days 31 to 60.",
        ),
        provenance={},
        evidence={},
        author="gate",
        status="approved",
    )
    library = StrategyLibrary(store, domain=northwind.id)
    found = library.retrieve([{"role": "user", "content": "I want a cash refund for my jacket."}])
    assert found.refs == ["strategy:1@v1"]
    assert library.retrieve([{"role": "user", "content": "Where is my parcel?"}]).refs == []
