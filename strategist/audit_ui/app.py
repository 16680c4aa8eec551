"""The audit page: a list with filters, a page per strategy with its evidence and before/after
dialogues, and approve / reject / retire / edit forms that carry the version the reviewer saw.

Access needs the random token printed at start: ``?token=...`` on the first visit moves it into
an HttpOnly, SameSite=Strict cookie; any request without it gets 401. Templates autoescape.
Every error is the page's own error page: an invalid form is 400, a body over ``max_body_bytes``
(1 MiB) is 413 and is not read past the limit."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..audit.evidence import gain_text, gate_line, pair_views, pairwise_text, provenance_line, source_line
from ..audit.lifecycle import STATUSES, ConflictError, ReviewRequest, TransitionError, clean_text
from ..audit.policy import policy_flag
from ..audit.production import traffic_line
from ..core.evidence import GateEvidence
from ..errors import NotFoundError, StrategistError, one_line

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from ..audit.lifecycle import Action
    from ..store import Store
    from ..store.tables import StrategyRow

TEMPLATES = Path(__file__).parent / "templates"
COOKIE = "strategist_audit"
POLICY_FILTERS = ("conflict", "ok", "unchecked")
ACTIONS: dict[str, Action] = {"approve": "approve", "reject": "reject", "retire": "retire", "edit": "edit"}
MAX_BODY_BYTES = 1024 * 1024  # a review form is a few KB of text


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        size = f"{limit // 1024} KiB" if limit >= 1024 else f"{limit} bytes"
        super().__init__(413, f"the form is larger than this page accepts ({size})")


class LimitBody:
    """Refuse request bodies over ``limit`` bytes: at the first read when the Content-Length says so
    (nothing is read), else as soon as the bytes read pass it. The BodyTooLarge raised where the
    body is read becomes the error page."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        too_large = declared.isdigit() and int(declared) > self.limit
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if too_large:
                raise BodyTooLarge(self.limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


def _gain(evidence: dict[str, Any]) -> str:
    return gain_text(GateEvidence.from_stored(evidence))


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _policy_state(row: StrategyRow) -> str:
    if not row.policy_check:
        return "unchecked"
    return "conflict" if row.policy_check.get("conflict") else "ok"


def _form_problem(exc: RequestValidationError) -> str:
    """What is wrong with a form, field by field, without echoing what was sent."""
    problems = []
    for err in exc.errors()[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        problems.append(f"{'.'.join(loc) or 'form'}: {err.get('msg', 'invalid')}")
    return "the form is incomplete or invalid: " + "; ".join(problems)


def create_app(store: Store, *, token: str, reviewer: str, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined)
    env.globals.update(
        policy_flag=policy_flag, policy_state=_policy_state, quote=quote, score=_score, gain=_gain
    )
    app = FastAPI(title="strategist audit", docs_url=None, redoc_url=None, openapi_url=None)

    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        resp = page("error.html", exc.status_code, error=f"{exc.status_code}: {exc.detail}")
        for name, value in (exc.headers or {}).items():  # e.g. Allow on a 405
            resp.headers[name] = value
        return resp

    @app.exception_handler(RequestValidationError)
    async def _form_error(_request: Request, exc: RequestValidationError) -> HTMLResponse:
        return page("error.html", 400, error=_form_problem(exc))

    # Added first, so it runs inside the token check (any middleware's wrapping would turn the
    # error it raises into an exception group) and right around the handlers that read the body.
    app.add_middleware(LimitBody, limit=max_body_bytes)

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.query_params.get("token")
        if given is not None and _same(given, token):
            # Move the token out of the address bar (and history) into a cookie.
            resp = RedirectResponse(str(request.url.remove_query_params("token")), status_code=303)
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return resp
        if not _same(request.cookies.get(COOKIE, ""), token):
            return PlainTextResponse(
                "401: open the address that `strategist audit-ui` printed; it carries the access token.",
                status_code=401,
            )
        origin = request.headers.get("origin")
        if request.method == "POST" and origin and urlsplit(origin).netloc != request.headers.get("host"):
            return PlainTextResponse("403: form sent from another site", status_code=403)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def index(status: str = "", domain: str = "", policy: str = "") -> HTMLResponse:
        rows = store.list_strategies(domain or None, [status] if status in STATUSES else None)
        if policy in POLICY_FILTERS:
            rows = [r for r in rows if _policy_state(r) == policy]
        return page(
            "list.html",
            rows=rows,
            statuses=STATUSES,
            domains=[d.id for d in store.list_domains()],
            policies=POLICY_FILTERS,
            chosen={"status": status, "domain": domain, "policy": policy},
        )

    def strategy_page(
        sid: int, *, message: str = "", error: str = "", status_code: int = 200
    ) -> HTMLResponse:
        try:
            row = store.get_strategy(sid)
        except NotFoundError as exc:
            return page("error.html", 404, error=one_line(exc))
        title = None
        scenario_id = row.provenance.get("scenario_id")
        if isinstance(scenario_id, int):
            try:
                title = store.get_scenario(scenario_id).title
            except NotFoundError:
                title = None
        evidence = GateEvidence.from_stored(row.evidence)
        return page(
            "strategy.html",
            status_code,
            row=row,
            provenance=provenance_line(row.provenance, title),
            production=traffic_line(store.strategy_outcomes([sid]).get(sid), row.version),
            gate=gate_line(evidence),
            source=source_line(evidence),
            pairwise_text=pairwise_text,
            evidence=evidence,
            pairs=evidence.pairs,
            views=pair_views(store, evidence, limit=3),
            versions=store.strategy_versions(sid),
            reviews=store.reviews(sid),
            reviewer=reviewer,
            message=message,
            error=error,
        )

    @app.get("/strategies/{sid}", response_class=HTMLResponse)
    def strategy(sid: int, msg: str = "") -> HTMLResponse:
        return strategy_page(sid, message=msg)

    @app.post("/strategies/{sid}/{action}", response_class=HTMLResponse)
    def act(
        sid: int,
        action: str,
        version: Annotated[int, Form()],
        status: Annotated[str, Form()],
        note: Annotated[str, Form()] = "",
        reviewer_name: Annotated[str, Form(alias="reviewer")] = "",
        trigger: Annotated[str | None, Form()] = None,
        guidance: Annotated[str | None, Form()] = None,
        example: Annotated[str | None, Form()] = None,
        approve: Annotated[str | None, Form()] = None,
    ) -> Response:
        chosen = ACTIONS.get(action)
        if chosen is None:
            return page("error.html", 404, error=f"no such action: {action}")
        try:
            text = None
            if chosen == "edit":
                row = store.get_strategy(sid)
                text = clean_text(
                    row.trigger if trigger is None else trigger,
                    row.guidance if guidance is None else guidance,
                    row.example if example is None else example,
                )
            done = store.review(
                ReviewRequest(
                    sid,
                    chosen,
                    reviewer_name.strip() or reviewer,
                    note,
                    seen_version=version,
                    seen_status=status,
                    text=text,
                    approve=bool(approve),
                )
            )
        except ConflictError as exc:
            return strategy_page(sid, error=one_line(exc), status_code=409)
        except NotFoundError as exc:
            return page("error.html", 404, error=one_line(exc))
        except (TransitionError, StrategistError) as exc:
            return strategy_page(sid, error=one_line(exc), status_code=400)
        msg = f"strategy {sid}: {status} v{version} -> {done.status} v{done.version}"
        return RedirectResponse(f"/strategies/{sid}?msg={quote(msg)}", status_code=303)

    return app
