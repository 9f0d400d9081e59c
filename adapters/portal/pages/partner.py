"""The partner's pages: the manual's chapters 4–9 — OTP and certificate login, the request,
waiting, pickup (also by the e-mailed link), the certificate manager with renewal and
revocation, the language."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.

import time
import urllib.parse
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from adapters.portal.http.claims import SessionClaims
from adapters.portal.pages.kit import (
    CSR_COMMAND,
    IMPORT_COMMAND,
    LANG_COOKIE,
    SESSION_COOKIE,
    Page,
    PageKit,
    field_of,
    request_fields,
)
from adapters.portal.refusal import bare, floored_login, no_sooner_than
from adapters.portal.texts import LANGUAGES
from ca_core.certificate import PARTNER_REVOCATION_REASONS
from ca_core.errors import DomainError, NotFound
from ca_core.portal import CertificateSession
from ca_core.x509profile import from_pem


def partner_pages(kit: PageKit, otp_refusal_seconds: float) -> APIRouter:
    """The partner's pages. ``otp_refusal_seconds``: the least time before a refused OTP
    login is answered (as the API's)."""
    web = APIRouter(include_in_schema=False)
    portal, sessions = kit.portal, kit.sessions

    @web.get("/lang/{language}")
    def choose_language(request: Request, language: str, next: str = "/") -> Response:
        if language not in LANGUAGES:
            raise NotFound(f"no language {language!r}", code="not-found")
        # only a path of this site: not "//host", not "/\\host" (browsers read it as "//")
        target = next if next.startswith("/") and not next.startswith("//") and \
            "\\" not in next and not any(ord(c) < 32 for c in next) else "/"
        answer = RedirectResponse(target, status_code=303)
        answer.set_cookie(LANG_COOKIE, language, samesite="strict", path="/",
                          max_age=365 * 86400)
        return answer

    # -- chapter 4.2 and 6: login ---------------------------------------------------------
    @web.get("/")
    def login_page(request: Request, tab: str = "software") -> Response:
        if kit.enrollment(request) is not None:
            return kit.redirect(request, "/request")
        if kit.certificate(request) is not None:
            return kit.redirect(request, "/certificate")
        page = kit.page(request)
        return kit.render(page, "login.html", tab=tab, modules=portal.rules.modules,
                      message=request.query_params.get("message"))

    @web.post("/login/otp")
    async def login_otp(request: Request) -> Response:
        page = kit.page(request)
        began = time.monotonic()
        refusal: DomainError | None = None
        try:
            kit.limit.check(request)
            form = await kit.form(request, page)
            module = str(form.get("module") or "") or None
            # the same floor as the API: known and unknown user ids answer alike
            found = await floored_login(lambda: portal.login_with_otp(
                str(form.get("user_id", ""))[:64], str(form.get("otp", ""))[:64], module),
                otp_refusal_seconds, began)
        except DomainError as exc:
            refusal = bare(exc)
        if refusal is not None:
            refusal = await no_sooner_than(began, otp_refusal_seconds, refusal)
            return kit.problem(page, "login.html", refusal, tab="software",
                           modules=portal.rules.modules, message=None)
        token = await run_in_threadpool(sessions.open, SessionClaims.for_enrollment(found))
        return kit.redirect(request, "/request", (SESSION_COOKIE, token))

    @web.get("/login/certificate")
    def login_certificate(request: Request) -> Response:
        """Chapter 6 behind nginx: the certificate the TLS proxy verified (trusted proxy
        only), as the API's ``/v1/sessions/tls-client``."""
        page = kit.page(request)
        pem = urllib.parse.unquote(request.headers.get("x-client-certificate", ""))
        if not sessions.trust.from_trusted_proxy(request) or request.headers.get(
                "x-client-verify") != "SUCCESS" or not pem:
            return kit.render(page, "login.html", status=401, tab="hardware",
                          modules=portal.rules.modules, message=None,
                          error=page.t("no_client_certificate"), code="tls-client-missing")
        try:
            kit.limit.check(request)
            found = portal.certificate_login.verified_by_proxy(pem)
        except DomainError as exc:
            return kit.problem(page, "login.html", exc, tab="hardware",
                           modules=portal.rules.modules, message=None)
        token = sessions.open(SessionClaims.for_certificate(found))
        return kit.redirect(request, "/certificate", (SESSION_COOKIE, token))

    @web.post("/logout")
    async def logout(request: Request) -> Response:
        page = kit.page(request)
        await kit.form(request, page)
        data = await run_in_threadpool(kit.partner, request)
        if data is not None:
            await run_in_threadpool(portal.sessions.end, data.session_id, f"user:{data.user}")
        return kit.redirect(request, "/?message=logged_out", (SESSION_COOKIE, None))

    # -- chapter 4: request, waiting, result ----------------------------------------------
    @web.get("/request")
    def request_page(request: Request) -> Response:
        who = kit.enrollment(request)
        if who is None:
            return kit.redirect(request, "/?message=session_needed")
        page = kit.page(request)
        return kit.render(page, "request.html", who=who,
                      command=CSR_COMMAND.format(user=who.user_id))

    @web.post("/request")
    async def submit(request: Request) -> Response:
        who = kit.enrollment(request)
        if who is None:
            return kit.redirect(request, "/?message=session_needed")
        page = kit.page(request)
        csr, *passwords = request_fields(await kit.form(request, page))
        try:
            request_id = await run_in_threadpool(portal.submit_request, who, csr, *passwords)
        except DomainError as exc:
            return kit.problem(page, "request.html", exc, who=who, csr_pem=csr,
                           command=CSR_COMMAND.format(user=who.user_id))
        return kit.redirect(request, f"/requests/{request_id}")

    def owned(request: Request, request_id: UUID) -> tuple[str, Any] | None:
        data = kit.partner(request)
        if data is None:
            return None
        return data.user, portal.owned_request(request_id, data.user)

    @web.get("/requests/{request_id}")
    def waiting(request: Request, request_id: UUID) -> Response:
        """Chapter 4.3: refreshes itself (no script) until the certificate is there."""
        found = owned(request, request_id)
        if found is None:
            return kit.redirect(request, "/?message=session_needed")
        page = kit.page(request)
        answer = kit.render(page, "waiting.html", request_id=request_id, state=found[1].state,
                        rejection=found[1].rejection)
        if found[1].state == "submitted":
            answer.headers["Refresh"] = "2"
        return answer

    def certificate_page(page: Page, picked: Any) -> HTMLResponse:
        return kit.render(page, "certificate.html", picked=picked, command=IMPORT_COMMAND)

    @web.post("/requests/{request_id}/pickup")
    async def pickup(request: Request, request_id: UUID) -> Response:
        page = kit.page(request)
        await kit.form(request, page)
        data = kit.partner(request)
        if data is None:
            return kit.redirect(request, "/?message=session_needed")
        try:
            picked = await run_in_threadpool(portal.pickup, request_id, data.user)
        except DomainError as exc:
            return kit.problem(page, "waiting.html", exc, request_id=request_id, state="error",
                           rejection=None)
        return certificate_page(page, picked)

    @web.get("/pickup/{request_id}")
    def pickup_link(request: Request, request_id: UUID, token: str = "") -> Response:
        """The e-mailed link: a page with a button; this GET uses nothing up."""
        page = kit.page(request)
        return kit.render(page, "pickup.html", request_id=request_id, token=token[:200])

    @web.post("/pickup/{request_id}")
    async def pickup_with_link(request: Request, request_id: UUID) -> Response:
        page = kit.page(request)
        try:
            kit.limit.check(request)
            form = await kit.form(request, page)
            picked = await run_in_threadpool(portal.pickup_with_link, request_id,
                                             str(form.get("token", "")))
        except DomainError as exc:
            return kit.problem(page, "pickup.html", exc, request_id=request_id, token="")
        return certificate_page(page, picked)

    # -- the certificate manager: chapters 5, 8, 9 ------------------------------------------
    def manager(page: Page, who: CertificateSession, status: int = 200,
                **context: Any) -> HTMLResponse:
        request = portal.request(who.request_id)
        live = (portal.status_source.status_of(who.serial) if portal.status_source
                else request.certificate_status) or "unknown"
        cert = from_pem(request.certificate_pem) if request.certificate_pem else None
        return kit.render(page, "manager.html", status=status, who=who, live=live, cert=cert,
                      reasons=PARTNER_REVOCATION_REASONS, command=CSR_COMMAND.format(user=who.user_id),
                      **context)

    @web.get("/certificate")
    def certificate_manager(request: Request) -> Response:
        found = kit.certificate(request)
        if found is None:
            return kit.redirect(request, "/?message=session_needed")
        return manager(kit.page(request), found[0])

    @web.get("/certificate.pem")
    def own_certificate(request: Request) -> Response:
        found = kit.certificate(request)
        if found is None:
            return kit.redirect(request, "/?message=session_needed")
        pem = portal.request(found[0].request_id).certificate_pem or ""
        return Response(pem, media_type="application/x-pem-file",
                        headers={"Content-Disposition": 'attachment; filename="certificate.pem"'})

    @web.post("/renewal")
    async def renewal(request: Request) -> Response:
        found = kit.certificate(request)
        if found is None:
            return kit.redirect(request, "/?message=session_needed")
        page = kit.page(request)
        csr, *passwords = request_fields(await kit.form(request, page))
        try:
            request_id = await run_in_threadpool(portal.request_renewal, found[0], csr,
                                                 *passwords)
        except DomainError as exc:
            return manager(page, found[0], exc.http_status, error=str(exc), code=exc.code,
                           form="renewal", csr_pem=csr, error_field=field_of(exc.code))
        return kit.redirect(request, f"/requests/{request_id}")

    @web.post("/revocation")
    async def revocation(request: Request) -> Response:
        found = kit.certificate(request)
        if found is None:
            return kit.redirect(request, "/?message=session_needed")
        page = kit.page(request)
        form = await kit.form(request, page)
        reason = str(form.get("reason", "unspecified"))
        try:
            await run_in_threadpool(portal.revoke, found[0], str(form.get("password", "")),
                                    reason)
        except DomainError as exc:
            return manager(page, found[0], exc.http_status, error=str(exc), code=exc.code,
                           form="revocation", error_field=field_of(exc.code))
        await run_in_threadpool(portal.sessions.end, found[1].session_id, f"user:{found[0].user_id}")
        return kit.redirect(request, "/?message=revocation_done", (SESSION_COOKIE, None))

    return web
