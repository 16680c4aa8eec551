"""``StrategyLibrary``: the strategies that fit a live conversation, and the prompt that carries them.

>>> library = StrategyLibrary.open("strategist.db")
>>> found = library.retrieve(messages, domain="northwind", k=3, budget=300)
>>> messages = library.augment(messages, domain="northwind")   # for your own LLM client
>>> messages.refs                                            # ['strategy:12@v2', ...]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack

from ..core.dialogue import StrategyText
from ..core.text import message_text
from ..errors import ConfigError, InputError, StrategistError
from ..models.base import Message
from ..models.embedding import Embedder
from .bridge import run_sync
from .rankers import Ranker, default_ranker
from .rerank import Reranker
from .retrieval import Retrieval, TokenCounter, estimate_tokens, select_within_budget
from .text import conversation_segments, query_terms
from .usage import UsageCounter, open_counters

if TYPE_CHECKING:
    from ..core.domain import Domain
    from ..store import Store
    from ..store.search import SearchHit

T = TypeVar("T")

DEFAULT_K = 3
#: Tokens the strategies may take in the prompt, all together.
DEFAULT_BUDGET = 300
#: BM25 floors the weight of a word found in half the strategies or more at 1e-6: a strategy
#: that matched only such words scores about that, which is no evidence that it fits.
MIN_SCORE = 1e-3
#: Libraries smaller than this keep matches that only reach BM25's floor (see _rank).
SMALL_LIBRARY = 20
APPROVED = ("approved",)
APPROVED_AND_PENDING = ("approved", "pending")
SYSTEM_ROLES = ("system", "developer")


class RetrievalSettings(TypedDict, total=False):
    """How much a retrieval takes. Each one left out, or None, takes the library's setting (a
    library made with ``budget=None`` has no token limit)."""

    k: int | None
    budget: int | None
    include_pending: bool | None


class RetrievalOptions(RetrievalSettings, total=False):
    """What ``retrieve`` and ``augment`` take besides the messages (None: the library's setting)."""

    domain: str | None
    token_counter: TokenCounter | None


@dataclass(frozen=True)
class _Ranked:
    """A retrieval before the budget: its settings (and no strategies yet), and the hits, best first."""

    retrieval: Retrieval
    query_text: str
    hits: list[SearchHit]
    scores: list[float]


class AugmentedMessages(list[dict[str, Any]]):
    """A plain list of OpenAI-style messages that also says which strategies went into it."""

    retrieval: Retrieval

    @property
    def refs(self) -> list[str]:
        return self.retrieval.refs


class StrategyLibrary:
    """Retrieval over a strategy library, plus rendering of the student's system prompt.

    Only *approved* strategies are used unless ``include_pending`` (for experiments; every
    result says when it was on), and only those scoring above ``min_score`` (BM25).
    ``template`` is a Jinja2 file of your own for the system prompt; it receives
    ``system_prompt`` (your prompt, or None), ``domain`` and ``strategies``. ``release``: a
    release label (``production``) or name: only the strategy versions it pinned are used (see
    ``strategist release``), and a label follows its promotions and rollbacks.
    """

    def __init__(
        self,
        store: Store,
        *,
        domain: str | None = None,
        k: int = DEFAULT_K,
        budget: int | None = DEFAULT_BUDGET,
        include_pending: bool = False,
        min_score: float = MIN_SCORE,
        token_counter: TokenCounter | None = None,
        embedder: Embedder | None = None,
        rerank_depth: int = 20,
        ranker: Ranker | None = None,
        template: str | Path | None = None,
        flush_every: int = 256,
        flush_seconds: float = 5.0,
        owns_store: bool = False,
        release: str | None = None,
    ) -> None:
        _check_limits(k, budget)
        if release is not None and include_pending:
            raise StrategistError(
                "a release holds approved strategies only: include_pending does not go with it"
            )
        self.store = store
        self.default_domain = domain
        self.k = k
        self.budget = budget
        self.include_pending = include_pending
        self.min_score = min_score
        self.token_counter = token_counter or estimate_tokens
        if release is not None:
            from .rankers import ReleaseRanker

            ranker = ReleaseRanker(store, release)
        self.release = release
        self.ranker = ranker or default_ranker(store)
        self.reranker = Reranker(embedder, depth=rerank_depth) if embedder else None
        self.template = Path(template) if template else None
        if self.template is not None and not self.template.is_file():
            raise ConfigError(f"prompt template not found: {self.template}")
        self.usage = UsageCounter(store, flush_every=flush_every, flush_seconds=flush_seconds)
        self._owns_store = owns_store
        self._domains: dict[str, Domain] = {}
        self._token_cache: dict[tuple[int, str], int] = {}
        open_counters.add(self.usage)

    @classmethod
    def open(cls, target: str | Path, *, optimize: bool = True, **options: Any) -> StrategyLibrary:
        """Open a library database: a SQLite file path or any SQLAlchemy URL.

        With ``optimize`` the full-text index is first merged into one segment if it has
        several (see ``optimize``).
        """
        from ..store import Store

        library = cls(Store.open(target), owns_store=True, **options)
        if optimize:
            library.optimize(only_if_needed=True)
        return library

    def optimize(self, *, only_if_needed: bool = False) -> bool:
        """Merge the FTS5 index into one segment (two to three times faster queries).

        Each write to the strategies adds a segment that FTS5 merges only lazily. A database
        that cannot be written to (read-only file, another writer holding the lock past the
        busy timeout) is left as it is. Returns whether the index was merged.
        """
        import sqlalchemy as sa

        if not self.store.has_search_index():
            return False
        try:
            if only_if_needed and self.store.search_index_segments() <= 1:
                return False
            self.store.optimize_search_index()
        except sa.exc.OperationalError:
            return False
        return True

    # -- domains -------------------------------------------------------------------------------
    def domain_id(self, domain: str | None = None) -> str:
        """The domain to use: the argument, the library's default, or the only one stored."""
        chosen = domain or self.default_domain
        if chosen:
            return chosen
        known = [d.id for d in self.store.list_domains()]
        if len(known) == 1:
            self.default_domain = known[0]
            return known[0]
        if not known:
            raise StrategistError("the library has no domain yet; load one with: strategist init")
        raise StrategistError(f"the library has several domains ({', '.join(known)}); pass domain=")

    def domain(self, domain: str | None = None) -> Domain:
        key = self.domain_id(domain)
        if key not in self._domains:
            self._domains[key] = self.store.get_domain(key)
        return self._domains[key]

    # -- retrieval -----------------------------------------------------------------------------
    def retrieve(
        self, messages: Sequence[Mapping[str, Any]], **options: Unpack[RetrievalOptions]
    ) -> Retrieval:
        """The best strategies for the conversation's next agent turn: at most ``k``, together
        within ``budget`` tokens, each with its score (see ``RetrievalOptions``)."""
        ranked = self._rank(messages, options, "retrieve")
        if self.reranker and ranked.hits:
            refuse = "retrieve() with embeddings cannot run inside an event loop; use aretrieve()"
            ranked = run_sync(self._rerank, ranked, refuse=refuse)
        return self._choose(ranked, options.get("token_counter"))

    async def aretrieve(
        self, messages: Sequence[Mapping[str, Any]], **options: Unpack[RetrievalOptions]
    ) -> Retrieval:
        """``retrieve`` for async code; the database part takes about a millisecond and runs inline."""
        ranked = self._rank(messages, options, "aretrieve")
        if self.reranker and ranked.hits:
            ranked = await self._rerank(ranked)
        return self._choose(ranked, options.get("token_counter"))

    def _rank(self, messages: Sequence[Mapping[str, Any]], options: RetrievalOptions, caller: str) -> _Ranked:
        unknown = sorted(set(options) - RetrievalOptions.__optional_keys__)
        if unknown:
            raise TypeError(f"{caller}() got an unexpected keyword argument '{unknown[0]}'")
        check_messages(messages)
        k = _setting(options.get("k"), self.k)
        budget = _setting(options.get("budget"), self.budget)
        _check_limits(k, budget)
        pending = _setting(options.get("include_pending"), self.include_pending)
        if pending and self.release is not None:
            raise StrategistError(
                "a release holds approved strategies only: include_pending does not go with it"
            )
        dom = self.domain_id(options.get("domain"))
        segments = conversation_segments(messages)
        terms = query_terms(segments)
        pool = max(4 * k, 12, self.reranker.depth if self.reranker else 0)
        statuses = APPROVED_AND_PENDING if pending else APPROVED
        hits = self.ranker.rank(terms, domain=dom, statuses=statuses, limit=pool, enough=k) if k else []
        kept = [h for h in hits if h.score > self.min_score]
        if hits and not kept and self.ranker.size(dom, statuses) < SMALL_LIBRARY:
            # Below this size every shared word sits in "half the library or more", where BM25
            # floors its weight: the floor says nothing here, and a match is still a match.
            kept = hits
        ranker = self.ranker.name + ("+embeddings" if self.reranker else "")
        settings = Retrieval(dom, [], terms, k, budget, pending, ranker, self.ranker.release)
        query_text = "\n".join(text for text, _ in segments)
        return _Ranked(settings, query_text, kept, [h.score for h in kept])

    async def _rerank(self, ranked: _Ranked) -> _Ranked:
        assert self.reranker is not None
        hits, scores = await self.reranker.rerank(ranked.query_text, ranked.hits)
        return replace(ranked, hits=hits, scores=scores)

    def _choose(self, ranked: _Ranked, token_counter: TokenCounter | None) -> Retrieval:
        count = self._cached_counter(token_counter or self.token_counter)
        settings = ranked.retrieval
        chosen = select_within_budget(
            ranked.hits, k=settings.k, budget=settings.budget, count=count, scores=ranked.scores
        )
        self.usage.record(r.strategy.id for r in chosen if r.strategy.id is not None)
        return replace(settings, strategies=chosen)

    def _cached_counter(self, counter: TokenCounter) -> TokenCounter:
        # Strategies repeat across calls; a model's tokenizer can cost far more than the lookup.
        key = id(counter)

        def count(text: str) -> int:
            cache_key = (key, text)
            n = self._token_cache.get(cache_key)
            if n is None:
                if len(self._token_cache) > 50_000:
                    self._token_cache.clear()
                n = self._token_cache[cache_key] = counter(text)
            return n

        return count

    # -- the prompt ----------------------------------------------------------------------------
    def system_prompt(
        self,
        strategies: Retrieval | Sequence[StrategyText],
        *,
        domain: str | None = None,
        system_prompt: str | None = None,
    ) -> str:
        """The student's system prompt with ``strategies`` in it.

        With ``system_prompt`` (yours): it, then the strategies section. Without: the domain's
        agent role and policy, then the strategies (the prompt the strategies were tested with).
        A ``template`` given to the library replaces both.
        """
        texts = strategies.texts if isinstance(strategies, Retrieval) else list(strategies)
        from ..prompting import render, render_file

        if self.template is not None:
            dom = self.domain(domain)
            return render_file(self.template, system_prompt=system_prompt, domain=dom, strategies=texts)

        if system_prompt is not None:
            return render("bot_system.j2", system_prompt=system_prompt, strategies=texts)
        return render("student_system.j2", domain=self.domain(domain), strategies=texts)

    def augment_with(
        self, messages: Sequence[Mapping[str, Any]], retrieval: Retrieval, *, system_prompt: str | None = None
    ) -> AugmentedMessages:
        """``messages`` with the system prompt carrying ``retrieval``'s strategies.

        The system prompt is built on ``system_prompt`` if given, else on the conversation's
        first system message (which it replaces), else on the domain's policy prompt.
        """
        out = [dict(m) for m in messages]
        first = next((i for i, m in enumerate(out) if m.get("role") in SYSTEM_ROLES), None)
        base = system_prompt
        if base is None and first is not None:
            base = message_text(out[first])
        text = self.system_prompt(retrieval, domain=retrieval.domain, system_prompt=base)
        if first is None:
            out.insert(0, {"role": "system", "content": text})
        else:
            out[first] = {"role": "system", "content": text}
        result = AugmentedMessages(out)
        result.retrieval = retrieval
        return result

    def augment(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        system_prompt: str | None = None,
        **options: Unpack[RetrievalOptions],
    ) -> AugmentedMessages:
        """Retrieve, then return the messages to send to your own LLM client (``.refs`` says
        which strategies are in them)."""
        return self.augment_with(messages, self.retrieve(messages, **options), system_prompt=system_prompt)

    async def aaugment(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        system_prompt: str | None = None,
        **options: Unpack[RetrievalOptions],
    ) -> AugmentedMessages:
        found = await self.aretrieve(messages, **options)
        return self.augment_with(messages, found, system_prompt=system_prompt)

    # -- lifecycle -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the usage counters now (they are otherwise written in batches)."""
        self.usage.flush()

    def close(self) -> None:
        self.flush()
        open_counters.discard(self.usage)
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> StrategyLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _setting(given: T | None, default: T) -> T:
    return default if given is None else given


def _check_limits(k: int, budget: int | None) -> None:
    if k < 0:
        raise StrategistError(f"k must be 0 or more, not {k}")
    if budget is not None and budget < 0:
        raise StrategistError(f"budget must be 0 or more tokens, not {budget}")


def check_messages(messages: Any) -> None:
    """OpenAI-style messages: a list of dicts, each with a role; content a string or text parts."""
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        raise InputError("messages", "", "must be a list of {role, content} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InputError("messages", f"[{i}]", "must be a dict with 'role' and 'content'")
        if not isinstance(m.get("role"), str):
            raise InputError("messages", f"[{i}].role", "must be a string")
        content = m.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InputError("messages", f"[{i}].content", "must be a string or a list of parts")


def model_messages(messages: Iterable[Mapping[str, Any]]) -> list[Message]:
    """Messages as a ChatModel takes them: a role and the text (parts joined; a developer message
    is a system one), and an assistant's tool calls and a tool result's call id passed through as
    they came."""
    out: list[Message] = []
    for m in messages:
        msg: Message = {
            "role": "system" if m["role"] == "developer" else str(m["role"]),
            "content": message_text(m),
        }
        for key in ("tool_calls", "tool_call_id", "name"):
            if m.get(key) is not None:
                msg[key] = m[key]
        out.append(msg)
    return out
