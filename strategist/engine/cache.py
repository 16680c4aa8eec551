"""The response cache: a completion is stored under a key made of everything that determines it
(model, every sampling parameter, the messages) plus its occurrence number, so repeated samples
of the same prompt stay distinct and an identical re-run replays the same sequence for free."""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from ..models.base import Completion, Message, Sampling, TokenLogprobs, ToolCallRequest, ToolParams
from ..store import Store


def request_key(
    model: str, messages: Sequence[Message], sampling: Sampling, tools: ToolParams | None = None
) -> str:
    """SHA-256 of the request as canonical JSON: ``json.dumps({"model", "messages", "sampling"[,
    "tools"]}, sort_keys=True, ensure_ascii=False)``, the text built piece by piece (the same
    text: keys stored by earlier versions still match) because this runs on every call."""
    parts = [_message_json(m) for m in messages]
    text = f'{{"messages": [{", ".join(parts)}], "model": {_string(model)}, '
    text += f'"sampling": {_sampling_json(sampling)}'
    if tools is not None:  # absent without tools: keys of requests without tools stay as they were
        text += ', "tools": ' + json.dumps(tools.request_fields(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256((text + "}").encode()).hexdigest()


_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) writes for a str


def _message_json(m: Message) -> str:
    """``json.dumps(m, sort_keys=True, ensure_ascii=False)``; a plain {role, content} message
    (nearly every one) without building the encoder."""
    if len(m) == 2:
        content, role = m.get("content"), m.get("role")
        if type(content) is str and type(role) is str:
            return _plain_json(content, role)
    return json.dumps(m, sort_keys=True, ensure_ascii=False)


# A dialogue sends its earlier messages again with every call: each is encoded once. The same
# string objects come back (a str caches its hash), so a hit costs no pass over the text.
@functools.lru_cache(maxsize=4096)  # bounded: entries hold their texts
def _plain_json(content: str, role: str) -> str:
    return f'{{"content": {_string(content)}, "role": {_string(role)}}}'


_SEED_MARK = "\x00seed\x00"
_SAMPLING_FIELDS = tuple(f.name for f in fields(Sampling) if f.name != "seed")


def _sampling_json(sampling: Sampling) -> str:
    """``json.dumps`` of the sampling's fields, sorted. Nearly every call has its own seed, so the
    text around the seed is what is cached (a run uses a handful of samplings otherwise)."""
    head, tail = _around_seed(tuple(getattr(sampling, name) for name in _SAMPLING_FIELDS))
    seed = sampling.seed
    return f"{head}{'null' if seed is None else int(seed)}{tail}"


@functools.lru_cache(maxsize=512)
def _around_seed(values: tuple[Any, ...]) -> tuple[str, str]:
    d = dict(zip(_SAMPLING_FIELDS, values, strict=True))
    d["seed"] = _SEED_MARK
    text = json.dumps(d, sort_keys=True, ensure_ascii=False)
    head, tail = text.split(json.dumps(_SEED_MARK, ensure_ascii=False))
    return head, tail


def completion_to_dict(c: Completion) -> dict[str, Any]:
    """What ``dataclasses.asdict`` gives (without ``cache_hit``), built directly: asdict deep-copies
    field by field, which costs more than a scripted model's whole call."""
    logprobs = c.logprobs
    calls = c.tool_calls
    return {
        "text": c.text,
        "model": c.model,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "logprobs": None
        if logprobs is None
        else [{"token": t.token, "logprob": t.logprob, "top": dict(t.top)} for t in logprobs],
        "latency_ms": c.latency_ms,
        "cost_usd": c.cost_usd,
        "tool_calls": None
        if calls is None
        else [{"id": t.id, "name": t.name, "arguments": t.arguments} for t in calls],
        "finish_reason": c.finish_reason,
    }


def completion_from_dict(d: dict[str, Any]) -> Completion:
    logprobs = d.get("logprobs")
    calls = d.get("tool_calls")
    return Completion(
        text=d["text"],
        model=d["model"],
        prompt_tokens=int(d.get("prompt_tokens", 0)),
        completion_tokens=int(d.get("completion_tokens", 0)),
        logprobs=[TokenLogprobs(**t) for t in logprobs] if logprobs is not None else None,
        latency_ms=float(d.get("latency_ms", 0.0)),
        cache_hit=True,
        tool_calls=[ToolCallRequest(**c) for c in calls] if calls is not None else None,
        finish_reason=d.get("finish_reason"),
    )


class ResponseCache:
    """Responses are written in batches with the ledger's rows (see ``Ledger.flush``); until then
    they are answered from memory."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen: Counter[str] = Counter()
        self._pending: dict[str, tuple[str, dict[str, Any]]] = {}
        # The keys stored for each model, read once per model: a miss then costs no query. A key
        # another process stores meanwhile is not seen (that request is simply made again).
        self._keys: dict[str, set[str]] = {}

    def key(
        self, model: str, messages: Sequence[Message], sampling: Sampling, tools: ToolParams | None = None
    ) -> str:
        """The key for the next occurrence of this exact request in this run."""
        base = request_key(model, messages, sampling, tools)
        n = self._seen[base]
        self._seen[base] += 1
        return hashlib.sha256(f"{base}:{n}".encode()).hexdigest()

    def get(self, key: str, model: str) -> Completion | None:
        pending = self._pending.get(key)
        if pending is not None:
            return completion_from_dict(pending[1])
        if model not in self._keys:
            self._keys[model] = self.store.cache_keys(model)
        if key not in self._keys[model]:
            return None
        d = self.store.cache_get(key)
        return completion_from_dict(d) if d is not None else None

    def put(self, key: str, model: str, completion: Completion) -> None:
        self._pending[key] = (model, completion_to_dict(completion))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def take(self) -> list[tuple[str, str, dict[str, Any]]]:
        """The responses waiting to be written, handed over to whoever writes them (``write``)."""
        pending, self._pending = self._pending, {}
        return [(k, m, c) for k, (m, c) in pending.items()]

    def write(self, items: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """Store responses ``take()`` handed over (on any thread: a key set only grows)."""
        if items:
            self.store.cache_put_many(items)
            for k, m, _ in items:
                if m in self._keys:  # a key set already read stays complete
                    self._keys[m].add(k)

    def flush(self) -> None:
        self.write(self.take())
