"""An OpenAI-compatible endpoint that puts the right strategies into every request.

``POST /v1/chat/completions`` (streaming or not) and ``GET /v1/models``: an existing bot adopts
the library by pointing its OpenAI client's base URL here. Each request's conversation is used
to retrieve strategies, the system prompt is rebuilt with them (the request's own system
message is kept as its base), and the request goes on to the upstream model through the model
layer (litellm for any real model name). The response says which strategies were used: header
``x-strategist-strategies`` (refs such as ``strategy:12@v2``, comma-separated) and a
``strategist`` field in the body (in the first chunk when streaming).

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad
request, 404 for an unknown model or path, 413 for a body over ``max_request_bytes``, 502 when
the upstream model fails, 500 otherwise. A stream that breaks after it has started ends with an
error event of the same shape (``data: {"error": {...}}``) and ``data: [DONE]``. When the client
disconnects, the upstream call it was waiting for is cancelled.

    uvicorn.run(create_app(StrategyLibrary.open("strategist.db"), resolve_model("openai/gpt-4o-mini")))
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar, Unpack

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import InputError, ModelError, ModelUnavailableError, StrategistError, format_loc, one_line
from .models.base import ChatModel, Sampling, StreamPiece, ToolCallDelta, ToolParams, complete, stream
from .runtime.bot import model_token_counter
from .runtime.capture import CONVERSATION_HEADER, TrafficRecorder
from .runtime.library import (
    SYSTEM_ROLES,
    RetrievalOptions,
    RetrievalSettings,
    StrategyLibrary,
    model_messages,
)

STRATEGIES_HEADER = "x-strategist-strategies"
PENDING_HEADER = "x-strategist-include-pending"
RELEASE_HEADER = "x-strategist-release"
# OpenAI's legacy function calling: tools and tool_choice replaced it.
UNSUPPORTED = ("functions", "function_call")
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
CLIENT_CLOSED_REQUEST = 499  # the status logged for a request whose client left before the answer
T = TypeVar("T")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    arguments: str  # JSON text, as the model wrote it


class ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = None  # an assistant message that called tools
    tool_call_id: str | None = None  # a tool message: the call it answers

    @model_validator(mode="after")
    def _tool_fields(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self


class ToolIn(BaseModel):
    """A tool the client offers, checked for its shape and forwarded exactly as it came."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: FunctionSpec


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ChatRequest(BaseModel):
    """The part of OpenAI's chat-completions request this endpoint reads; the rest is ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False  # true or false only: "yes" or 1 is a mistake, not a request to stream
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)
    tools: list[ToolIn] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None

    def tool_params(self, body: dict[str, Any]) -> ToolParams | None:
        """The tools as the client sent them (validated, forwarded untouched)."""
        if not self.tools:
            return None
        return ToolParams(tuple(body["tools"]), self.tool_choice, self.parallel_tool_calls)


class ApiError(Exception):
    """An error to send back in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body, status_code=err.status)


def _validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    # A union (content: str | parts) reports one error per branch; name the field, not the branch.
    loc = [p for p in first.get("loc", ()) if p not in ("str", "list[ContentPart]")]
    param = format_loc(loc) if loc else None
    missing = first.get("type") == "missing"
    message = f"{param}: {first.get('msg', 'invalid')}" if param else str(first.get("msg", "invalid"))
    return ApiError(
        400, message, param=param, code="missing_required_parameter" if missing else "invalid_value"
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes: from
    its Content-Length before reading any of it, else while it arrives."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "the Content-Length header is not a number", code="invalid_value") from None
        if size > limit:
            raise _too_large(limit)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"the request body is larger than this server accepts ({limit} bytes)", code="request_too_large"
    )


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "the request body is not valid JSON", code="invalid_json") from None
    except RecursionError:
        raise ApiError(
            400, "the request body is not valid JSON: nested too deeply", code="invalid_json"
        ) from None


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _disconnected(request: Request) -> None:
    """Return once the client has disconnected (the body has been read: nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it (and raising ClientGone) if the client disconnects first: a
    hung upstream is then neither waited for nor retried on behalf of nobody."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ClientGone()
    return task.result()


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn, or a one-line StrategistError when it cannot be
    (a port in use, an address not on this machine)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StrategistError(
                f"port {port} on {host} is in use (another server listens there): "
                "stop it or choose another --port"
            ) from None
        reason = exc.strerror or str(exc)
        raise StrategistError(f"cannot listen on {host} port {port}: {reason}") from None
    return sock


def _parse(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_value")
    for name in UNSUPPORTED:
        if body.get(name):
            raise ApiError(
                400,
                f"'{name}' is not supported by this endpoint: use 'tools' and 'tool_choice'",
                param=name,
                code="unsupported_parameter",
            )
    try:
        req = ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    if req.n not in (None, 1):
        raise ApiError(400, "only n=1 is supported", param="n", code="unsupported_value")
    return req


def _sampling(req: ChatRequest, default: Sampling) -> Sampling:
    stop: tuple[str, ...] = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    return Sampling(
        temperature=default.temperature if req.temperature is None else req.temperature,
        max_tokens=req.max_completion_tokens or req.max_tokens or default.max_tokens,
        seed=req.seed,
        stop=stop,
    )


def create_app(
    library: StrategyLibrary,
    upstream: ChatModel,
    domain: str | None = None,
    *,
    model_names: Sequence[str] | None = None,
    system_prompt: str | None = None,
    sampling: Sampling | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    capture: TrafficRecorder | None = None,
    **settings: Unpack[RetrievalSettings],
) -> FastAPI:
    """The FastAPI app. ``model_names``: the model names clients may ask for (404 for others);
    None accepts any name, so a bot only has to change its base URL. ``system_prompt`` is used
    for requests that bring no system message (else the domain's policy prompt). ``k``,
    ``budget`` and ``include_pending`` (``RetrievalSettings``) apply to every request. A request
    body over ``max_request_bytes`` gets 413 without being read. ``capture``: every answered
    conversation is handed to it (queued in memory; it writes redacted batches from its own
    thread, never on the request's path); the client may name its conversation in the
    ``x-strategist-conversation`` header."""
    domain_id = library.domain_id(domain)
    library.domain(domain_id)  # fail at start-up, not at the first request
    names = list(model_names) if model_names else [upstream.name]
    strict = bool(model_names)
    default_sampling = sampling or Sampling(temperature=0.7, max_tokens=512)
    counter = model_token_counter(upstream)
    options: RetrievalOptions = {"domain": domain_id, "token_counter": counter, **settings}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Load the upstream's tokenizer (litellm takes seconds to import) before taking requests.
        await asyncio.to_thread(counter, "ready")
        if capture is not None:
            capture.start()
        yield
        library.flush()
        if capture is not None:
            await asyncio.to_thread(capture.close)  # what is still queued is written before exit

    app = FastAPI(title="strategist", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error_response(ApiError(exc.status_code, str(exc.detail), type=kind))

    @app.exception_handler(RequestValidationError)
    async def _request_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(ApiError(400, one_line(exc), code="invalid_value"))

    @app.exception_handler(Exception)
    async def _server_error(_request: Request, exc: Exception) -> JSONResponse:
        return _error_response(ApiError(500, f"internal error: {one_line(exc)}", type="server_error"))

    def model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "strategist"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(n) for n in names]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> dict[str, Any]:
        if name not in names:
            raise ApiError(404, f"model '{name}' is not served here", param="model", code="model_not_found")
        return model_card(name)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "upstream": upstream.name, "domain": domain_id}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        try:
            return await answer(request)
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody reads it; the log shows it

    async def answer(request: Request) -> Response:
        body = _json(await _read_body(request, max_request_bytes))
        req = _parse(body)
        tools = req.tool_params(body)
        if strict and req.model not in names:
            served = ", ".join(names)
            raise ApiError(
                404,
                f"model '{req.model}' is not served here (served: {served})",
                param="model",
                code="model_not_found",
            )
        messages = [m.model_dump(exclude_none=True) for m in req.messages]
        own_system = any(m["role"] in SYSTEM_ROLES for m in messages)
        try:
            augmented = await library.aaugment(
                messages, system_prompt=None if own_system else system_prompt, **options
            )
        except InputError as exc:
            raise ApiError(400, str(exc), param="messages", code="invalid_value") from None
        found = augmented.retrieval
        sent = model_messages(augmented)
        s = _sampling(req, default_sampling)
        info = {
            "strategies": found.refs,
            "include_pending": found.include_pending,
            "domain": found.domain,
            "release": found.release,
        }
        headers = {
            STRATEGIES_HEADER: ",".join(found.refs),
            PENDING_HEADER: str(found.include_pending).lower(),
        }
        if found.release is not None:
            headers[RELEASE_HEADER] = found.release
        conversation = request.headers.get(CONVERSATION_HEADER)

        def captured(reply: dict[str, Any]) -> None:
            if capture is not None:
                meta = {"model": req.model, "upstream": upstream.name, "release": found.release}
                capture.record(messages, reply, found.refs, conversation=conversation, meta=meta)

        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not req.stream:
            try:
                c = await _unless_client_leaves(request, complete(upstream, sent, s, tools))
            except (ModelError, ModelUnavailableError) as exc:
                raise _upstream_error(exc) from None
            finish = c.finish_reason or ("length" if c.completion_tokens >= s.max_tokens else "stop")
            message: dict[str, Any] = {"role": "assistant", "content": c.text}
            if c.tool_calls:
                message["content"] = c.text or None
                message["tool_calls"] = [t.as_openai() for t in c.tool_calls]
                finish = "tool_calls"
            captured(message)
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": upstream.name,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens,
                        "total_tokens": c.total_tokens,
                    },
                    "strategist": info,
                },
                headers=headers,
            )

        pieces = stream(upstream, sent, s, tools)
        # Wait for the first piece before answering: a failing upstream still gets a proper
        # error status instead of a stream that breaks off.
        try:
            first: StreamPiece | None = await _unless_client_leaves(request, pieces.__anext__())
        except StopAsyncIteration:
            first = None
        except (ModelError, ModelUnavailableError) as exc:
            await _aclose(pieces)
            raise _upstream_error(exc) from None
        except ClientGone:
            await _aclose(pieces)
            raise

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": upstream.name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        called = False
        text: list[str] = []
        calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces], for the capture

        def delta(piece: StreamPiece) -> dict[str, Any]:
            nonlocal called
            if isinstance(piece, ToolCallDelta):
                called = True
                call = calls.setdefault(piece.index, [None, None, []])
                call[0], call[1] = call[0] or piece.id, call[1] or piece.name
                call[2].append(piece.arguments)
                return {"tool_calls": [piece.as_openai()]}
            text.append(piece)
            return {"content": piece}

        def streamed() -> dict[str, Any]:
            reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
            if calls:
                reply["tool_calls"] = [
                    {
                        "id": cid or f"call_{i}",
                        "type": "function",
                        "function": {"name": name or "", "arguments": "".join(a)},
                    }
                    for i, (cid, name, a) in sorted(calls.items())
                ]
            return reply

        async def events() -> AsyncIterator[str]:
            try:
                yield chunk({"role": "assistant", "content": ""}, strategist=info)
                if first:
                    yield chunk(delta(first))
                async for piece in pieces:
                    yield chunk(delta(piece))
                captured(streamed())
                yield chunk({}, "tool_calls" if called else "stop")
            except Exception as exc:  # the status is sent already: the error goes in the stream
                if isinstance(exc, ModelError | ModelUnavailableError):
                    err = _upstream_error(exc)
                else:
                    err = ApiError(500, f"internal error: {one_line(exc)}", type="server_error")
                yield f"data: {json.dumps(err.body)}\n\n"
            finally:
                await _aclose(pieces)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return app


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def _upstream_error(exc: StrategistError) -> ApiError:
    return ApiError(
        502, f"upstream model failed: {one_line(exc)}", type="upstream_error", code="upstream_error"
    )
