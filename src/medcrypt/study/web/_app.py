"""The study web app (Starlette): routes, token checks, cross-site protection, headers.

Routes (everything under ``/api`` needs ``Authorization: Bearer TOKEN``)::

    GET  /                        the reader's page (a static shell; no study data in it)
    GET  /coordinator             the coordinator's page (static shell)
    GET  /static/<name>           the pages' script and style sheet, from the package
    GET  /api/reader              the reader's open session: order, answers, instructions
    GET  /api/reader/image/<id>   one PNG of that session, by packet image ID
    POST /api/reader/answer       one click {answer_id, image_id, diagnosis}
    POST /api/reader/finish       hand the session in (every image answered)
    GET  /api/coordinator         progress, early / late sessions, blinding check
    POST /api/coordinator/open-early  {reader}: open session 2 before its date (recorded)
    POST /api/coordinator/ingest  finished web sessions into answers.jsonl
    POST /api/coordinator/reopen  {reader, session}: open a handed-in session again (recorded)
    POST /api/coordinator/tally   ingest, then tally and write STUDY/report/; the reply holds
                                  the report as escaped HTML
    GET  /api/coordinator/report/figure6.png   the chart of the last tally

A request without a valid token gets 401, a valid token of the wrong role 403; neither says
more. Nothing maps a URL to a file path: images are looked up by ID in the reader's own
packet (and the resolved path checked to lie inside it), static files by name in a fixed
table; ``study.json``, the unblinding key, the links file and other readers' answers have no
route. Before routing, :mod:`._guard` refuses a ``Host`` that is not the server's own (400,
DNS rebinding) and a body over 16 KiB (413, before reading it). POSTs need the bearer header
(browsers never add it on their own, unlike cookies), a JSON body that fits its strict model
(:mod:`._requests`), and an ``Origin`` (when sent) naming one of the server's own hosts.
Every reply carries a ``Content-Security-Policy`` that lets the pages load nothing from
elsewhere.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medcrypt.errors import AnswerSheetError, AnswerStoreError, StudyError
from medcrypt.study._log import read_answers
from medcrypt.study._report import render_html_body, write_report
from medcrypt.study._tally import tally
from medcrypt.study.web._guard import MAX_BODY, AllowedHosts, BodyLimit, HostGuard
from medcrypt.study.web._requests import EmptyBody, Refusal, parse
from medcrypt.study.web._sheets import ingest_web_answers, reopening_notes
from medcrypt.study.web._tokens import COORDINATOR, hash_token
from medcrypt.study.web._views import StudyService

__all__ = ["SECURITY_HEADERS", "create_app"]

logger = logging.getLogger(__name__)

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}

_STATIC = {
    "reader.js": "text/javascript; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "coordinator.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
_PAGES = {"reader": "reader.html", "coordinator": "coordinator.html"}
_CHART = "/api/coordinator/report/figure6.png"


class _Headers:
    """ASGI middleware: the security headers on every HTTP reply."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(http_status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"www-authenticate": "Bearer"} if http_status == 401 else None
    return JSONResponse({"error": message, **extra}, status_code=http_status, headers=headers)


def _static_text(name: str) -> bytes:
    return resources.files("medcrypt.study.web").joinpath("static", name).read_bytes()


def create_app(
    service: StudyService,
    *,
    allowed: AllowedHosts,
    tokens: dict[str, tuple[str, str | None]] | None = None,
) -> Starlette:
    """The ASGI app for one study, answering only to the ``allowed`` hosts; ``tokens``
    (hash -> role, reader) default to the store's."""
    valid = dict(tokens if tokens is not None else service.store.tokens())
    static = {name: _static_text(name) for name in _STATIC}
    pages = {name: _static_text(file) for name, file in _PAGES.items()}

    def who(request: Request) -> tuple[str, str | None] | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hash_token(token.strip())
        for stored, identity in valid.items():
            if hmac.compare_digest(stored, digest):
                return identity
        return None

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is not None and not allowed.origin_ok(origin):
            return False
        site = request.headers.get("sec-fetch-site")
        return site in (None, "same-origin", "none")

    Handler = Callable[[Request, str | None], Awaitable[Response]]

    def guarded(role: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            identity = who(request)
            if identity is None:
                return _error(401, "a valid access link is needed")
            if identity[0] != role:
                return _error(403, "this link does not open this page")
            if request.method == "POST":
                if not same_origin(request):
                    return _error(403, "cross-site request refused")
                if request.headers.get("content-type", "").split(";")[0] != "application/json":
                    return _error(415, "expected Content-Type: application/json")
            try:
                return await handler(request, identity[1])
            except Refusal as exc:
                return _error(exc.http_status, exc.message, **exc.extra)
            except AnswerStoreError as exc:
                logger.warning("answer database: %s", exc)
                detail = exc.message.split(";")[0]
                return _error(
                    503,
                    f"Not saved: {detail}. Your answer is kept in this browser and sent again "
                    "automatically.",
                    reason=exc.reason,
                    detail=detail,
                )

        return endpoint

    async def body(request: Request) -> Any:
        raw = await request.body()  # BodyLimit has refused anything longer already
        if len(raw) > MAX_BODY:
            raise Refusal(413, f"expected a body of at most {MAX_BODY} bytes")
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise Refusal(422, "expected a JSON body") from None

    async def page(request: Request) -> Response:
        name = "coordinator" if request.url.path == "/coordinator" else "reader"
        return Response(pages[name], media_type="text/html; charset=utf-8")

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            return _error(404, "not found")
        return Response(static[name], media_type=_STATIC[name])

    async def reader_state(request: Request, reader: str | None) -> Response:
        assert reader is not None
        return JSONResponse(await run_in_threadpool(service.reader_state, reader))

    async def reader_image(request: Request, reader: str | None) -> Response:
        assert reader is not None
        path = await run_in_threadpool(service.image_path, reader, request.path_params["iid"])
        return FileResponse(path, media_type="image/png")

    async def reader_answer(request: Request, reader: str | None) -> Response:
        assert reader is not None
        data = await body(request)
        return JSONResponse(await run_in_threadpool(service.answer, reader, data))

    async def reader_finish(request: Request, reader: str | None) -> Response:
        assert reader is not None
        data = await body(request)
        return JSONResponse(await run_in_threadpool(service.finish, reader, data))

    async def coordinator_state(request: Request, _: str | None) -> Response:
        return JSONResponse(await run_in_threadpool(service.progress))

    async def open_early(request: Request, _: str | None) -> Response:
        data = await body(request)
        return JSONResponse(await run_in_threadpool(service.open_early, data))

    def _ingest() -> dict[str, Any]:
        try:
            result = ingest_web_answers(service.key, service.study_dir)
        except AnswerSheetError as exc:
            raise Refusal(409, "nothing was ingested", problems=exc.problems) from None
        return {
            "stored": [s.model_dump(mode="json") for s in result.sheets],
            "skipped": list(result.skipped),
        }

    async def reopen(request: Request, _: str | None) -> Response:
        data = await body(request)
        return JSONResponse(await run_in_threadpool(service.reopen, data))

    async def chart(request: Request, _: str | None) -> Response:
        path = service.study_dir / "report" / "figure6.png"
        if not path.is_file():
            return _error(404, "no tally yet: run the tally first")
        return FileResponse(path, media_type="image/png")

    def _tally() -> dict[str, Any]:
        ingested = _ingest()
        try:
            answers = read_answers(service.study_dir / "answers.jsonl", key=service.key)
            report = tally(service.key, answers)
            notes = (*report.notes, *reopening_notes(service.study_dir))
            report = report.model_copy(update={"notes": notes})
            write_report(report, service.key, answers, service.study_dir / "report")
        except StudyError as exc:
            raise Refusal(409, f"the tally failed: {exc}") from None
        return {"ingest": ingested, "report_html": render_html_body(report, chart_src=_CHART)}

    async def ingest(request: Request, _: str | None) -> Response:
        parse(EmptyBody, await body(request))
        return JSONResponse(await run_in_threadpool(_ingest))

    async def run_tally(request: Request, _: str | None) -> Response:
        parse(EmptyBody, await body(request))
        return JSONResponse(await run_in_threadpool(_tally))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "not found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, "method not allowed")

    routes = [
        Route("/", page),
        Route("/coordinator", page),
        Route("/static/{name}", static_file),
        Route("/api/reader", guarded("reader", reader_state)),
        Route("/api/reader/image/{iid}", guarded("reader", reader_image)),
        Route("/api/reader/answer", guarded("reader", reader_answer), methods=["POST"]),
        Route("/api/reader/finish", guarded("reader", reader_finish), methods=["POST"]),
        Route("/api/coordinator", guarded(COORDINATOR, coordinator_state)),
        Route("/api/coordinator/open-early", guarded(COORDINATOR, open_early), methods=["POST"]),
        Route("/api/coordinator/ingest", guarded(COORDINATOR, ingest), methods=["POST"]),
        Route("/api/coordinator/reopen", guarded(COORDINATOR, reopen), methods=["POST"]),
        Route("/api/coordinator/tally", guarded(COORDINATOR, run_tally), methods=["POST"]),
        Route(_CHART, guarded(COORDINATOR, chart)),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_allowed},
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_middleware(HostGuard, allowed=allowed)
    app.add_middleware(_Headers)
    return app
