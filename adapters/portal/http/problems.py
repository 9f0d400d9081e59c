"""Every refusal as an RFC 9457 problem (``application/problem+json``, ``type``
``urn:partner-ca:problem:<code>``); a domain error's status is its class's. A refusal on one
of the pages is answered as a page instead, by the renderer the assembly hands in."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import psycopg
from eventsourcing.persistence import IntegrityError
from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ca_core.errors import Conflict, DomainError, NotReady

PROBLEM = "application/problem+json"
TITLES = {400: "Malformed request", 401: "Not authenticated", 403: "Refused",
          404: "Not found", 405: "Method not allowed", 409: "Conflict",
          413: "Request too large", 422: "Refused by a rule", 429: "Too many attempts",
          503: "Not ready"}
#: what a store that went away answers: every class the drivers and the library raise for it
StoreUnavailable = (StoreOperationalError, StoreInterfaceError, psycopg.OperationalError,
                    psycopg.InterfaceError, PoolTimeout, sqlite3.OperationalError)
#: seconds a client is asked to wait when the store is away
RETRY_AFTER_SECONDS = 5
#: a refusal answered as a page when the request was for one (None: not a page)
PageError = Callable[[Request, DomainError], Response | None]

log = logging.getLogger(__name__)


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str


def problem(code: str, detail: str, status: int) -> JSONResponse:
    """An RFC 9457 problem."""
    return JSONResponse({"type": f"urn:partner-ca:problem:{code}", "title": TITLES.get(
        status, "Error"), "status": status, "detail": detail, "code": code},
        status_code=status, media_type=PROBLEM)


def documented_problems() -> dict[int | str, dict[str, object]]:
    """The problem answers as the OpenAPI description lists them."""
    return {code: {"description": TITLES.get(code, "Error"), "content": {
        PROBLEM: {"schema": Problem.model_json_schema()}}}
        for code in (400, 401, 403, 404, 405, 409, 413, 422, 429, 503)}


def answer_with_problems(app: FastAPI, page_error: PageError | None = None) -> None:
    """Install the handlers: domain refusals, lost races (409), an unreachable store (503 with
    Retry-After), malformed requests (400), and Starlette's own HTTP errors."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        page = page_error(request, exc) if page_error is not None else None
        return page if page is not None else problem(exc.code, str(exc), exc.http_status)

    @app.exception_handler(IntegrityError)
    async def _raced(request: Request, exc: IntegrityError) -> Response:
        """Two identical calls at once (pickup, revocation, OTP issue, logout, …): the store
        took the first, refused the second's events; nothing half-written (issue 26 #12)."""
        lost = Conflict("another request changed this at the same moment and was taken "
                        "first; load it again to see the result", code="concurrent-change")
        return await _domain(request, lost)

    async def _store_down(request: Request, exc: Exception) -> Response:
        """The store went away (a PostgreSQL restart, a dead pooled connection): 503 with
        Retry-After, never a 500; the next call opens a new connection."""
        log.warning("store unavailable: %s", type(exc).__name__)
        down = NotReady("the portal's store cannot be reached just now; try again in a few "
                        "seconds", code="store-unavailable")
        answer = await _domain(request, down)
        answer.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return answer

    for unavailable in StoreUnavailable:
        app.add_exception_handler(unavailable, _store_down)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem("request-invalid", f"{where}: {first.get('msg', 'invalid')}", 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem("not-found" if exc.status_code == 404 else "http-error", str(exc.detail),
                       exc.status_code)
