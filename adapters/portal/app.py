"""The portal over HTTP, assembled: the API by audience (partners, ops, the chain), the
pages by audience (partners, ops, auditors), the shared sessions, limits, middleware and
problems. The one place that knows both the API and the pages.

The API's OpenAPI description is served at ``/openapi.json`` (docs at ``/docs`` when asked
for). Every API refusal is ``application/problem+json`` with a stable ``type``
(``urn:partner-ca:problem:<code>``) and the rule's ``code``; a refusal on a page is a page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from adapters.portal.api.chain import chain_routes
from adapters.portal.api.guards import Guards
from adapters.portal.api.ops import ops_routes
from adapters.portal.api.partner import partner_routes
from adapters.portal.http.limits import ATTEMPTS_PER_ADDRESS, ATTEMPTS_WINDOW, AddressLimit, AttemptLimiter
from adapters.portal.http.middleware import MAX_BODY, BodyLimit, SecurityHeaders
from adapters.portal.http.problems import answer_with_problems, documented_problems
from adapters.portal.http.sessions import ProxyTrust, Sessions
from adapters.portal.ops_auth import OpsTokens
from adapters.portal.pages.audit import audit_pages
from adapters.portal.pages.kit import STATIC, PageKit, error_page
from adapters.portal.pages.ops import ops_pages
from adapters.portal.pages.partner import partner_pages
from adapters.storage.attempts import Attempts
from ca_core.portal import Portal

#: a refused OTP login is answered no sooner than this (s) after it came in (issue 16)
OTP_REFUSAL_SECONDS = 0.25

API_DESCRIPTION = """Sessions are signed bearer tokens (itsdangerous), recorded and checked on
every call: an OTP login opens an *enrollment* session (one certificate request), a
certificate login (R5) a *certificate* session (renewal, revocation, pickup). Every refusal is
``application/problem+json`` with a stable ``type`` (``urn:partner-ca:problem:<code>``) and
the rule's ``code``."""


def portal_api(portal: Portal, *, ops_tokens: OpsTokens | None = None,
               attempts_per_address: int = ATTEMPTS_PER_ADDRESS,
               attempts_window: float = ATTEMPTS_WINDOW,
               trusted_proxies: Sequence[str] = (), api_docs: bool = False,
               attempts: Attempts | None = None,
               otp_refusal_seconds: float = OTP_REFUSAL_SECONDS,
               audit_apps: Callable[[], list[Any]] | None = None) -> FastAPI:
    """The portal (API and pages) for one Portal application; ops endpoints answer only with
    ``ops_tokens``.

    ``trusted_proxies``: addresses or networks whose X-Forwarded-For / X-Forwarded-Proto are
    believed (default: none). ``attempts``: the per-address counter every portal process
    shares (default: this process's memory). ``api_docs``: serve ``/docs`` and ``/redoc``
    (FastAPI's pages load their scripts from a public CDN, so they are off unless asked for);
    ``/openapi.json`` is always there. ``otp_refusal_seconds``: the least time before a
    refused OTP login is answered (known and unknown user ids alike). ``audit_apps``: the
    applications whose logs the auditor pages read (default: the portal's)."""
    trust = ProxyTrust(trusted_proxies)
    sessions = Sessions(portal, trust, ops_tokens)
    limit = AddressLimit(trust, attempts or AttemptLimiter(
        attempts_per_address, attempts_window, portal.clock))
    guards = Guards(sessions, limit, ops_tokens)
    kit = PageKit(portal, sessions, limit)

    app = FastAPI(title="Partner CA portal API", version="1",
                  docs_url="/docs" if api_docs else None,
                  redoc_url="/redoc" if api_docs else None,
                  description=API_DESCRIPTION, responses=documented_problems())
    answer_with_problems(app, page_error=error_page)
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_middleware(SecurityHeaders, trust=trust)
    app.include_router(partner_routes(portal, guards, otp_refusal_seconds))
    app.include_router(chain_routes(portal))
    app.include_router(ops_routes(portal, guards))
    app.include_router(partner_pages(kit, otp_refusal_seconds))
    app.include_router(ops_pages(kit))
    app.include_router(audit_pages(kit, audit_apps))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
