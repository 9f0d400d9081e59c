"""The portal's web pages (issue 18): the manual's chapters for partners, the ops console and
the auditor's timeline, server-rendered (Jinja2), no script, no third-party resource.

Every page calls the same application services as the HTTP API (``ca_core/portal.py``), so
no rule has a second code path. Sessions are the API's signed session tokens, kept in an
HttpOnly, SameSite=Strict cookie (Secure and ``__Host-``-prefixed behind TLS, so no sibling
host or network attacker can set one); every form that changes something carries a CSRF
token: an HMAC under the portal secret of a per-browser random cookie *and* the session
cookies, so a tossed CSRF cookie does not help without the victim's session, and logging in
rotates it. The ops pages keep a short server-side session, never the ops token. A
GET never changes anything: the e-mailed pickup link opens a page with a button, so a mail
scanner that fetches links does not use it up. Czech by default, English with
``/lang/en``; the texts are in ``adapters/portal/texts.py``.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.

import csv
import io
import secrets
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from adapters.audit.history import HistoryIndex
from adapters.portal.ops_auth import OpsIdentity, OpsTokens
from adapters.portal.refusal import bare, floored_login, no_sooner_than
from adapters.portal.texts import LANGUAGES, TEXTS, text
from ca_core.certificate import RevocationReason, parse_serial
from ca_core.credentials import keyed_token, same_token
from ca_core.errors import DomainError, NotAuthenticated, NotFound
from ca_core.portal import CertificateSession, EnrollmentSession, Portal
from ca_core.treehead import head_id
from ca_core.x509profile import from_pem

HERE = Path(__file__).parent
STATIC = HERE / "static"
SESSION_COOKIE, CSRF_COOKIE, OPS_COOKIE, LANG_COOKIE = (
    "pca_session", "pca_csrf", "pca_ops", "pca_lang")
#: the pages' own policy: their stylesheet, nothing else; forms post only here
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
USER_REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded",
                "cessationOfOperation")
#: the commands the pages show (the token tool on the partner's machine, chapter 4)
CSR_COMMAND = ("partner-ca token keygen --token <token>\n"
               "partner-ca token csr --token <token> --user {user} --out request.csr")
IMPORT_COMMAND = ("partner-ca token import --token <token> --cert certificate.pem "
                  "--chain ca-chain.pem")

_templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                         autoescape=select_autoescape(["html"]), trim_blocks=True,
                         lstrip_blocks=True)


class Page:
    """What every page needs: the language, the CSRF token, the texts, the cookies' names
    (``__Host-`` behind TLS)."""

    def __init__(self, request: Request, secret: bytes, https: bool = False) -> None:
        self.request = request
        self.https = https
        chosen = request.cookies.get(LANG_COOKIE, "cs")
        self.language = chosen if chosen in LANGUAGES else "cs"
        self.csrf_seed = self.cookie(CSRF_COOKIE) or secrets.token_urlsafe(24)
        # bound to the session cookies: a CSRF cookie an attacker set (cookie tossing) makes
        # no valid token for the victim's session (issue 26, item 3)
        self.csrf = keyed_token(secret, "csrf", self.csrf_seed,
                                self.cookie(SESSION_COOKIE) or "-", self.cookie(OPS_COOKIE) or "-")

    def name(self, base: str) -> str:
        """A cookie's name: ``__Host-`` prefixed behind TLS (Secure, Path=/, no Domain)."""
        return f"__Host-{base}" if self.https else base

    def cookie(self, base: str) -> str | None:
        return self.request.cookies.get(self.name(base))

    def t(self, key: str) -> str:
        return text(key, self.language)


def _https(request: Request, trusted: Callable[[Request], bool]) -> bool:
    if request.url.scheme == "https":
        return True
    return trusted(request) and request.headers.get("x-forwarded-proto", "").split(",")[
        -1].strip() == "https"


def web_routes(portal: Portal, sessions: Any, ops_tokens: OpsTokens | None,
               otp_refusal_seconds: float, audit_apps: Callable[[], list[Any]] | None = None
               ) -> APIRouter:
    """The pages. ``sessions``: the API's ``Sessions`` (tokens, limits, trusted proxies);
    ``audit_apps``: the applications whose logs the auditor pages read (default: the
    portal's)."""
    web = APIRouter(include_in_schema=False)
    secret = portal.secret
    histories = HistoryIndex()  # what each log holds about whom, read once and then added to

    # -- rendering and cookies -----------------------------------------------------------
    def page_of(request: Request) -> Page:
        return Page(request, secret, _https(request, sessions.from_trusted_proxy))

    def render(page: Page, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        body = _templates.get_template(template).render(
            t=page.t, lang=page.language, csrf=page.csrf, texts=TEXTS,
            path=page.request.url.path, **context)
        answer = HTMLResponse(body, status_code=status,
                              headers={"Content-Security-Policy": PAGE_CSP})
        if page.cookie(CSRF_COOKIE) != page.csrf_seed:
            answer.set_cookie(page.name(CSRF_COOKIE), page.csrf_seed, httponly=True,
                              samesite="strict", secure=page.https, path="/")
        return answer

    def redirect(request: Request, to: str, cookie: tuple[str, str | None] | None = None
                 ) -> RedirectResponse:
        """A 303 to ``to``; with ``cookie`` (name, value or None to delete) the session
        cookie changes, and so does the CSRF seed (rotated at every login and logout)."""
        page = page_of(request)
        answer = RedirectResponse(to, status_code=303)
        if cookie is not None:
            name, value = cookie
            if value is None:
                answer.delete_cookie(page.name(name), path="/", secure=page.https,
                                     httponly=True, samesite="strict")
            else:
                answer.set_cookie(page.name(name), value, httponly=True, samesite="strict",
                                  path="/", secure=page.https, max_age=sessions.lifetime)
            answer.set_cookie(page.name(CSRF_COOKIE), secrets.token_urlsafe(24), httponly=True,
                              samesite="strict", secure=page.https, path="/")
        return answer

    async def form_of(request: Request, page: Page) -> dict[str, Any]:
        """The posted form, after its CSRF token was checked."""
        form = await request.form()
        sent = str(form.get("csrf", ""))
        if page.cookie(CSRF_COOKIE) is None or not same_token(sent, page.csrf):
            raise NotAuthenticated("the form has expired; load the page again",
                                   code="csrf-invalid")
        found: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                found[key] = (await value.read(64 * 1024)).decode("utf-8", "replace")
            else:
                found[key] = value
        return found

    def session_of(request: Request) -> dict[str, Any] | None:
        token = page_of(request).cookie(SESSION_COOKIE)
        if not token:
            return None
        try:
            return dict(sessions.session(f"Bearer {token}"))
        except DomainError:
            return None

    def enrollment(request: Request) -> EnrollmentSession | None:
        data = session_of(request)
        if data is None or data.get("k") != "enrollment":
            return None
        return EnrollmentSession(UUID(data["o"]), data["u"], data["m"])

    def certificate(request: Request) -> tuple[CertificateSession, dict[str, Any]] | None:
        data = session_of(request)
        if data is None or data.get("k") != "certificate":
            return None
        found = CertificateSession(data["u"], data["m"], data["s"], UUID(data["r"]))
        try:
            portal.check_certificate_session(found)
        except DomainError:
            return None
        return found, data

    def problem(page: Page, template: str, exc: DomainError, **context: Any) -> HTMLResponse:
        return render(page, template, status=exc.http_status, error=str(exc), code=exc.code,
                      error_field=field_of(exc.code), **context)

    # -- language ------------------------------------------------------------------------
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
        if enrollment(request) is not None:
            return redirect(request, "/request")
        if certificate(request) is not None:
            return redirect(request, "/certificate")
        page = page_of(request)
        return render(page, "login.html", tab=tab, modules=portal.rules.modules,
                      message=request.query_params.get("message"))

    @web.post("/login/otp")
    async def login_otp(request: Request) -> Response:
        page = page_of(request)
        began = time.monotonic()
        refusal: DomainError | None = None
        try:
            sessions.check_address(request)
            form = await form_of(request, page)
            module = str(form.get("module") or "") or None
            # the same floor as the API: known and unknown user ids answer alike
            found = await floored_login(lambda: portal.login_with_otp(
                str(form.get("user_id", ""))[:64], str(form.get("otp", ""))[:64], module),
                otp_refusal_seconds, began)
        except DomainError as exc:
            refusal = bare(exc)
        if refusal is not None:
            refusal = await no_sooner_than(began, otp_refusal_seconds, refusal)
            return problem(page, "login.html", refusal, tab="software",
                           modules=portal.rules.modules, message=None)
        token = await run_in_threadpool(sessions.open, {
            "k": "enrollment", "u": found.user_id, "m": found.module, "o": str(found.otp_id)})
        return redirect(request, "/request", (SESSION_COOKIE, token))

    @web.get("/login/certificate")
    def login_certificate(request: Request) -> Response:
        """Chapter 6 behind nginx: the certificate the TLS proxy verified (trusted proxy
        only), as the API's ``/v1/sessions/tls-client``."""
        page = page_of(request)
        pem = urllib.parse.unquote(request.headers.get("x-client-certificate", ""))
        if not sessions.from_trusted_proxy(request) or request.headers.get(
                "x-client-verify") != "SUCCESS" or not pem:
            return render(page, "login.html", status=401, tab="hardware",
                          modules=portal.rules.modules, message=None,
                          error=page.t("no_client_certificate"), code="tls-client-missing")
        try:
            sessions.check_address(request)
            found = portal.login_with_verified_certificate(pem)
        except DomainError as exc:
            return problem(page, "login.html", exc, tab="hardware",
                           modules=portal.rules.modules, message=None)
        token = sessions.open({"k": "certificate", "u": found.user_id, "m": found.module,
                               "s": found.serial, "r": str(found.request_id)})
        return redirect(request, "/certificate", (SESSION_COOKIE, token))

    @web.post("/logout")
    async def logout(request: Request) -> Response:
        page = page_of(request)
        await form_of(request, page)
        data = await run_in_threadpool(session_of, request)
        if data is not None:
            await run_in_threadpool(portal.end_session, data["i"], f"user:{data['u']}")
        return redirect(request, "/?message=logged_out", (SESSION_COOKIE, None))

    # -- chapter 4: request, waiting, result ----------------------------------------------
    @web.get("/request")
    def request_page(request: Request) -> Response:
        who = enrollment(request)
        if who is None:
            return redirect(request, "/?message=session_needed")
        page = page_of(request)
        return render(page, "request.html", who=who,
                      command=CSR_COMMAND.format(user=who.user_id))

    @web.post("/request")
    async def submit(request: Request) -> Response:
        who = enrollment(request)
        if who is None:
            return redirect(request, "/?message=session_needed")
        page = page_of(request)
        csr, *passwords = request_fields(await form_of(request, page))
        try:
            request_id = await run_in_threadpool(portal.submit_request, who, csr, *passwords)
        except DomainError as exc:
            return problem(page, "request.html", exc, who=who, csr_pem=csr,
                           command=CSR_COMMAND.format(user=who.user_id))
        return redirect(request, f"/requests/{request_id}")

    def owned(request: Request, request_id: UUID) -> tuple[str, Any] | None:
        data = session_of(request)
        if data is None:
            return None
        found = portal.request(request_id)
        if found.user_id != data["u"]:
            raise NotFound(f"no request {request_id}", code="request-unknown")
        return data["u"], found

    @web.get("/requests/{request_id}")
    def waiting(request: Request, request_id: UUID) -> Response:
        """Chapter 4.3: refreshes itself (no script) until the certificate is there."""
        found = owned(request, request_id)
        if found is None:
            return redirect(request, "/?message=session_needed")
        page = page_of(request)
        answer = render(page, "waiting.html", request_id=request_id, state=found[1].state,
                        rejection=found[1].rejection)
        if found[1].state == "submitted":
            answer.headers["Refresh"] = "2"
        return answer

    def certificate_page(page: Page, picked: Any) -> HTMLResponse:
        return render(page, "certificate.html", picked=picked, command=IMPORT_COMMAND)

    @web.post("/requests/{request_id}/pickup")
    async def pickup(request: Request, request_id: UUID) -> Response:
        page = page_of(request)
        await form_of(request, page)
        data = session_of(request)
        if data is None:
            return redirect(request, "/?message=session_needed")
        try:
            picked = await run_in_threadpool(portal.pickup, request_id, data["u"])
        except DomainError as exc:
            return problem(page, "waiting.html", exc, request_id=request_id, state="error",
                           rejection=None)
        return certificate_page(page, picked)

    @web.get("/pickup/{request_id}")
    def pickup_link(request: Request, request_id: UUID, token: str = "") -> Response:
        """The e-mailed link: a page with a button; this GET uses nothing up."""
        page = page_of(request)
        return render(page, "pickup.html", request_id=request_id, token=token[:200])

    @web.post("/pickup/{request_id}")
    async def pickup_with_link(request: Request, request_id: UUID) -> Response:
        page = page_of(request)
        try:
            sessions.check_address(request)
            form = await form_of(request, page)
            picked = await run_in_threadpool(portal.pickup_with_link, request_id,
                                             str(form.get("token", "")))
        except DomainError as exc:
            return problem(page, "pickup.html", exc, request_id=request_id, token="")
        return certificate_page(page, picked)

    # -- the certificate manager: chapters 5, 8, 9 ------------------------------------------
    def manager(page: Page, who: CertificateSession, status: int = 200,
                **context: Any) -> HTMLResponse:
        request = portal.request(who.request_id)
        live = (portal.status_source.status_of(who.serial) if portal.status_source
                else request.certificate_status) or "unknown"
        cert = from_pem(request.certificate_pem) if request.certificate_pem else None
        return render(page, "manager.html", status=status, who=who, live=live, cert=cert,
                      reasons=USER_REASONS, command=CSR_COMMAND.format(user=who.user_id),
                      **context)

    @web.get("/certificate")
    def certificate_manager(request: Request) -> Response:
        found = certificate(request)
        if found is None:
            return redirect(request, "/?message=session_needed")
        return manager(page_of(request), found[0])

    @web.get("/certificate.pem")
    def own_certificate(request: Request) -> Response:
        found = certificate(request)
        if found is None:
            return redirect(request, "/?message=session_needed")
        pem = portal.request(found[0].request_id).certificate_pem or ""
        return Response(pem, media_type="application/x-pem-file",
                        headers={"Content-Disposition": 'attachment; filename="certificate.pem"'})

    @web.post("/renewal")
    async def renewal(request: Request) -> Response:
        found = certificate(request)
        if found is None:
            return redirect(request, "/?message=session_needed")
        page = page_of(request)
        csr, *passwords = request_fields(await form_of(request, page))
        try:
            request_id = await run_in_threadpool(portal.request_renewal, found[0], csr,
                                                 *passwords)
        except DomainError as exc:
            return manager(page, found[0], exc.http_status, error=str(exc), code=exc.code,
                           form="renewal", csr_pem=csr, error_field=field_of(exc.code))
        return redirect(request, f"/requests/{request_id}")

    @web.post("/revocation")
    async def revocation(request: Request) -> Response:
        found = certificate(request)
        if found is None:
            return redirect(request, "/?message=session_needed")
        page = page_of(request)
        form = await form_of(request, page)
        reason = str(form.get("reason", "unspecified"))
        if reason not in USER_REASONS:
            return manager(page, found[0], 422, error=f"{reason!r} is not a reason a user can "
                           "give", code="revocation-reason-invalid", form="revocation")
        try:
            await run_in_threadpool(portal.revoke, found[0], str(form.get("password", "")),
                                    reason)
        except DomainError as exc:
            return manager(page, found[0], exc.http_status, error=str(exc), code=exc.code,
                           form="revocation", error_field=field_of(exc.code))
        await run_in_threadpool(portal.end_session, found[1]["i"], f"user:{found[0].user_id}")
        return redirect(request, "/?message=revocation_done", (SESSION_COOKIE, None))

    # -- ops console -------------------------------------------------------------------------
    def ops_session(request: Request) -> tuple[OpsIdentity, str] | None:
        token = page_of(request).cookie(OPS_COOKIE)
        return sessions.ops_session(token, ops_tokens) if token else None

    def ops_identity(request: Request) -> OpsIdentity | None:
        found = ops_session(request)
        return found[0] if found is not None else None

    @web.get("/ops")
    def ops_home(request: Request, q: str = "") -> Response:
        page = page_of(request)
        who = ops_identity(request)
        if who is None:
            return render(page, "ops_login.html")
        found: dict[str, Any] = {}
        if q.strip():
            found = ops_search(who, q.strip())
        return render(page, "ops.html", who=who, q=q, found=found,
                      modules=portal.rules.modules, reasons=[r.value for r in RevocationReason])

    def ops_search(who: OpsIdentity, q: str) -> dict[str, Any]:
        try:
            who.check_sees_partner(portal, q)
            partner = portal.partner(q)
        except DomainError:
            partner = None
        if partner is not None:
            visible = [r for r in (portal.request(i) for i in partner.requests)
                       if "operator" in who.roles or f"admin:{r.module}" in who.roles]
            return {"partner": partner, "requests": visible,
                    "causes": {r.id: cause_of(r.id) for r in visible}}
        try:
            request = who.visible_request_for_serial(portal, parse_serial(q))
        except DomainError as exc:
            return {"error": str(exc)}
        return {"requests": [request], "causes": {request.id: cause_of(request.id)}}

    def cause_of(request_id: UUID) -> str:
        """The event that decided where a request and its certificate stand, with its
        fields (what ops are asked first: why is it revoked, since when)."""
        last = None
        for event in portal.repository.event_store.get(request_id):
            last = event
        if last is None:
            return ""
        fields = ", ".join(f"{k}={v}" for k, v in last.public_fields().items()
                           if k in ("reason", "requested_by", "revoked_at", "via", "code",
                                    "attempts", "unlocked_by", "not_after"))
        return f"{type(last).__name__} {last.timestamp.isoformat(timespec='seconds')}" + (
            f" ({fields})" if fields else "")

    @web.post("/ops/login")
    async def ops_login(request: Request) -> Response:
        page = page_of(request)
        try:
            sessions.check_address(request)
            form = await form_of(request, page)
        except DomainError as exc:
            return problem(page, "ops_login.html", exc)
        token = str(form.get("token", "")).strip()
        who = ops_tokens.authenticate(token) if ops_tokens is not None else None
        if who is None:
            return render(page, "ops_login.html", status=401, error="the ops token is not "
                          "valid (or has expired)", code="ops-token-required")
        session = await run_in_threadpool(sessions.open_ops, who)
        return redirect(request, "/ops", (OPS_COOKIE, session))

    @web.post("/ops/logout")
    async def ops_logout(request: Request) -> Response:
        await form_of(request, page_of(request))
        found = await run_in_threadpool(ops_session, request)
        if found is not None:  # ended for every portal process, not only this browser
            await run_in_threadpool(portal.end_session, found[1], f"ops:{found[0].name}")
        return redirect(request, "/ops", (OPS_COOKIE, None))

    async def ops_action(request: Request, act: Callable[[OpsIdentity, dict[str, Any]], Any]
                         ) -> Response:
        page = page_of(request)
        who = ops_identity(request)
        if who is None:
            return render(page, "ops_login.html", status=401)
        form = await form_of(request, page)
        try:
            done = await run_in_threadpool(act, who, form)
        except DomainError as exc:
            return render(page, "ops.html", status=exc.http_status, who=who, q="", found={},
                          modules=portal.rules.modules, error=str(exc), code=exc.code,
                          reasons=[r.value for r in RevocationReason])
        return render(page, "ops.html", who=who, q="", found={}, done=done,
                      modules=portal.rules.modules, reasons=[r.value for r in RevocationReason])

    @web.post("/ops/partners")
    async def ops_register(request: Request) -> Response:
        def act(who: OpsIdentity, form: dict[str, Any]) -> str:
            modules = [m.strip() for m in str(form.get("modules", "")).split(",") if m.strip()]
            for module in modules:
                who.check_module(module)
            portal.register_partner(str(form.get("user_id", "")).strip(),
                                    str(form.get("email", "")).strip(), modules,
                                    registered_by=f"ops:{who.name}")
            return f"{form.get('user_id')}: registered in {', '.join(modules)}"
        return await ops_action(request, act)

    @web.post("/ops/otps")
    async def ops_issue_otp(request: Request) -> Response:
        page = page_of(request)
        who = ops_identity(request)
        if who is None:
            return render(page, "ops_login.html", status=401)
        form = await form_of(request, page)
        user, module = str(form.get("user_id", "")).strip(), str(form.get("module", ""))
        try:
            who.check_module(module)
            await run_in_threadpool(who.check_sees_partner, portal, user)
            _, otp = await run_in_threadpool(portal.issue_otp, user, module,
                                             f"ops:{who.name}")
        except DomainError as exc:
            return render(page, "ops.html", status=exc.http_status, who=who, q="", found={},
                          modules=portal.rules.modules, error=str(exc), code=exc.code,
                          reasons=[r.value for r in RevocationReason])
        # shown on this answer only (no-store); never again, never logged
        return render(page, "ops.html", who=who, q="", found={}, otp=otp, otp_user=user,
                      otp_module=module, modules=portal.rules.modules,
                      reasons=[r.value for r in RevocationReason])

    @web.post("/ops/revocations")
    async def ops_revoke(request: Request) -> Response:
        def act(who: OpsIdentity, form: dict[str, Any]) -> str:
            who.check_operator()
            serial = parse_serial(str(form.get("serial", "")))
            portal.revoke_as_operator(serial, str(form.get("reason", "")), who.name)
            return f"{serial}: revocation requested"
        return await ops_action(request, act)

    @web.post("/ops/unlocks")
    async def ops_unlock(request: Request) -> Response:
        def act(who: OpsIdentity, form: dict[str, Any]) -> str:
            who.check_operator()
            serial = parse_serial(str(form.get("serial", "")))
            changed = portal.unlock_revocation(serial, who.name)
            return f"{serial}: {'unlocked' if changed else 'was not locked'}"
        return await ops_action(request, act)

    # -- auditor pages -------------------------------------------------------------------------
    def audit_entries(who: OpsIdentity, user: str | None, serial: str | None) -> list[Any]:
        if "operator" not in who.roles:  # a module administrator: certificates of his modules
            if serial is None or user is not None:
                who.check_operator()
            who.visible_request_for_serial(portal, serial)
        apps = audit_apps() if audit_apps else [portal]
        return histories.history(apps, user_id=user, serial=serial)

    def signed_sizes() -> dict[str, int]:
        """How many events of each log the latest signed tree head covers."""
        sizes = {}
        for app in (audit_apps() if audit_apps else [portal]):
            try:
                sizes[app.name] = app.repository.get(head_id(app.name)).tree_size
            except AggregateNotFoundError:
                sizes[app.name] = 0
        return sizes

    @web.get("/audit")
    def audit_page(request: Request, user: str = "", serial: str = "", at: str = "") -> Response:
        page = page_of(request)
        who = ops_identity(request)
        if who is None:
            return render(page, "ops_login.html", status=401)
        try:
            serial_hex = parse_serial(serial) if serial else None
            entries = audit_entries(who, user or None, serial_hex) if (user or serial) else []
            moment = _instant(at) if at else None
        except (DomainError, ValueError) as exc:
            failed = exc if isinstance(exc, DomainError) else None
            return render(page, "audit.html", status=failed.http_status if failed else 400,
                          who=who, user=user, serial=serial, at=at, entries=[],
                          error=str(exc), code=failed.code if failed else "request-invalid",
                          picture=None, status_at=None)
        status_at = None
        if moment is not None and serial_hex:
            status_at = _status_from(entries, serial_hex, moment)
        sizes = signed_sizes()
        return render(page, "audit.html", who=who, user=user, serial=serial, at=at,
                      entries=[_row(e, sizes) for e in entries], status_at=status_at,
                      picture=_picture(entries), query=urllib.parse.urlencode(
                          {k: v for k, v in (("user", user), ("serial", serial)) if v}))

    @web.get("/audit.csv")
    def audit_csv(request: Request, user: str = "", serial: str = "") -> Response:
        who = ops_identity(request)
        if who is None:
            raise NotAuthenticated("an ops token is required", code="ops-token-required")
        entries = audit_entries(who, user or None, parse_serial(serial) if serial else None)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["time", "store", "position", "event", "aggregate",
                         "covered_by_signed_head", "fields"])
        sizes = signed_sizes()
        for entry in entries:
            row = _row(entry, sizes)
            writer.writerow([row["time"], row["store"], row["position"], row["event"],
                             row["aggregate"], "yes" if row["covered"] else "no",
                             row["fields"]])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="history.csv"'})

    return web


def request_fields(form: dict[str, Any]) -> tuple[str, str, str]:
    """A request or renewal form: the CSR (uploaded file, else pasted) and the revocation
    password twice."""
    csr = str(form.get("csr_file") or "").strip() or str(form.get("csr_pem", "")).strip()
    return csr, str(form.get("password", "")), str(form.get("password_again", ""))


def field_of(code: str) -> str | None:
    """The form field a refusal is about, so the page shows it next to that field."""
    if code.startswith("revocation-password") or code == "revocation-locked":
        return "password"
    if code.startswith(("csr-", "key-")) or code in ("public-key-reused", "key-compromised"):
        return "csr"
    if code.startswith("otp-") or code == "user-unknown":
        return "otp"
    return None


def is_page(request: Request) -> bool:
    """Whether a request is for one of the pages (not the API, not a download)."""
    path = request.url.path
    return not path.startswith(("/v1/", "/openapi", "/docs", "/redoc", "/static/")) and \
        not path.endswith((".csv", ".pem"))


def error_page(request: Request, exc: DomainError) -> HTMLResponse:
    """A refusal on a page, as a page (the API answers problem+json)."""
    language = request.cookies.get(LANG_COOKIE, "cs")
    language = language if language in LANGUAGES else "cs"
    body = _templates.get_template("error.html").render(
        t=lambda key: text(key, language), lang=language, csrf="", texts=TEXTS,
        path="/", error=str(exc), code=exc.code)
    return HTMLResponse(body, status_code=exc.http_status,
                        headers={"Content-Security-Policy": PAGE_CSP})


def _instant(text_value: str) -> datetime:
    moment = datetime.fromisoformat(text_value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _row(entry: Any, signed: dict[str, int]) -> dict[str, Any]:
    fields = entry.event.public_fields()
    return {"time": entry.event.timestamp.isoformat(timespec="seconds"), "store": entry.store,
            "position": entry.position, "event": entry.type, "aggregate": entry.aggregate,
            "covered": entry.position <= signed.get(entry.store, 0),
            "fields": ", ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))}


def _status_from(entries: list[Any], serial: str, moment: datetime) -> dict[str, Any]:
    """The certificate's status at ``moment`` and the event that decided it: the CA log's
    own events of that certificate, through the one function ``audit at`` uses too
    (``deciding_event``). Without the CA's log (a portal-only page), what the portal
    recorded of it."""
    from ca_core.certificate import Certificate, CertificateStatus, deciding_event

    certificate_id = Certificate.id_for(serial)
    ours = [e for e in entries if e.store == "ca" and e.event.originator_id == certificate_id]
    if ours:
        by_event = {id(e.event): e for e in ours}
        status, reason, cause = deciding_event((e.event for e in ours), moment)
        decided = by_event.get(id(cause)) if cause is not None else None
    else:
        status, reason, decided = _portal_status(entries, serial, moment)
    return {"status": CertificateStatus(status).value, "reason": reason,
            "decided_by": decided.type if decided else None,
            "position": decided.position if decided else None,
            "store": decided.store if decided else None}


def _portal_status(entries: list[Any], serial: str, moment: datetime
                   ) -> tuple[str, str | None, Any]:
    from ca_core.certificate import effective_status

    status, reason, decided, not_after = "unknown", None, None, None
    for entry in entries:
        fields = entry.event.public_fields()
        if entry.event.timestamp > moment or fields.get("serial") != serial:
            continue
        if entry.type == "CertificateReady":
            status, decided, not_after = "good", entry, getattr(entry.event, "not_after", None)
        elif entry.type == "RevocationConfirmed":
            status, reason, decided = "revoked", getattr(entry.event, "reason", None), entry
        elif entry.type == "ExpiryNoted":
            status, decided = "expired", entry
    return effective_status(status, not_after, moment).value, reason, decided


def _picture(entries: list[Any]) -> dict[str, Any] | None:
    """The timeline as an SVG: one mark per event along a time axis, one row per store."""
    if not entries:
        return None
    first = entries[0].event.timestamp.timestamp()
    last = entries[-1].event.timestamp.timestamp()
    span = max(last - first, 1.0)
    width, left = 880, 110
    stores = sorted({e.store for e in entries})
    marks = [{"x": round(left + (e.event.timestamp.timestamp() - first) / span * (width - left
                                                                                  - 20), 1),
              "y": 30 + 40 * stores.index(e.store), "label": e.type,
              "position": e.position, "store": e.store} for e in entries]
    return {"width": width, "height": 40 * len(stores) + 40, "left": left,
            "rows": [{"store": s, "y": 30 + 40 * i} for i, s in enumerate(stores)],
            "marks": marks, "from": entries[0].event.timestamp.isoformat(timespec="seconds"),
            "to": entries[-1].event.timestamp.isoformat(timespec="seconds")}
