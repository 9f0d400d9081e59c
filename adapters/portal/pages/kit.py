"""What every page needs: language, rendering, cookies, CSRF, the session behind the cookie.

Every page calls the same application services as the HTTP API (``ca_core/portal.py``), so
no rule has a second code path. Sessions are the API's signed session tokens
(``adapters.portal.http.sessions``), kept in an HttpOnly, SameSite=Strict cookie (Secure and
``__Host-``-prefixed behind TLS, so no sibling host or network attacker can set one); every
form that changes something carries a CSRF token: an HMAC under the portal secret of a
per-browser random cookie *and* the session cookies, so a tossed CSRF cookie does not help
without the victim's session, and logging in rotates it. The ops pages keep a short
server-side session, never the ops token. A GET never changes anything. Czech by default,
English with ``/lang/en``; the texts are in ``adapters/portal/texts.py``.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import UploadFile

from adapters.portal.http.claims import SessionClaims
from adapters.portal.http.limits import AddressLimit
from adapters.portal.http.sessions import Sessions
from adapters.portal.ops_auth import OpsIdentity
from adapters.portal.texts import LANGUAGES, TEXTS, text
from ca_core.credentials import keyed_token, same_token
from ca_core.errors import DomainError, NotAuthenticated
from ca_core.portal import CertificateSession, EnrollmentSession, Portal

HERE = Path(__file__).parent.parent
STATIC = HERE / "static"
SESSION_COOKIE, CSRF_COOKIE, OPS_COOKIE, LANG_COOKIE = (
    "pca_session", "pca_csrf", "pca_ops", "pca_lang")
#: the pages' own policy: their stylesheet, nothing else; forms post only here
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
#: the commands the pages show (the token tool on the partner's machine, chapter 4)
CSR_COMMAND = ("partner-ca token keygen --token <token>\n"
               "partner-ca token csr --token <token> --user {user} --out request.csr")
IMPORT_COMMAND = ("partner-ca token import --token <token> --cert certificate.pem "
                  "--chain ca-chain.pem")

_templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                         autoescape=select_autoescape(["html"]), trim_blocks=True,
                         lstrip_blocks=True)


def chosen_language(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE, "cs")
    return chosen if chosen in LANGUAGES else "cs"


class Page:
    """One page being answered: the language, the CSRF token, the texts, the cookies' names
    (``__Host-`` behind TLS)."""

    def __init__(self, request: Request, secret: bytes, https: bool = False) -> None:
        self.request = request
        self.https = https
        self.language = chosen_language(request)
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


class PageKit:
    """Rendering, redirects, forms and the sessions behind the cookies, for every page."""

    def __init__(self, portal: Portal, sessions: Sessions, limit: AddressLimit) -> None:
        self.portal, self.sessions, self.limit = portal, sessions, limit

    # -- rendering and cookies -----------------------------------------------------------
    def page(self, request: Request) -> Page:
        return Page(request, self.portal.secret, self.sessions.trust.request_https(request))

    def render(self, page: Page, template: str, status: int = 200,
               **context: Any) -> HTMLResponse:
        body = _templates.get_template(template).render(
            t=page.t, lang=page.language, csrf=page.csrf, texts=TEXTS,
            path=page.request.url.path, **context)
        answer = HTMLResponse(body, status_code=status,
                              headers={"Content-Security-Policy": PAGE_CSP})
        if page.cookie(CSRF_COOKIE) != page.csrf_seed:
            answer.set_cookie(page.name(CSRF_COOKIE), page.csrf_seed, httponly=True,
                              samesite="strict", secure=page.https, path="/")
        return answer

    def problem(self, page: Page, template: str, exc: DomainError,
                **context: Any) -> HTMLResponse:
        """A refusal shown on the page it came from, next to the field it is about."""
        return self.render(page, template, status=exc.http_status, error=str(exc),
                           code=exc.code, error_field=field_of(exc.code), **context)

    def redirect(self, request: Request, to: str,
                 cookie: tuple[str, str | None] | None = None) -> RedirectResponse:
        """A 303 to ``to``; with ``cookie`` (name, value or None to delete) the session
        cookie changes, and so does the CSRF seed (rotated at every login and logout)."""
        page = self.page(request)
        answer = RedirectResponse(to, status_code=303)
        if cookie is not None:
            name, value = cookie
            if value is None:
                answer.delete_cookie(page.name(name), path="/", secure=page.https,
                                     httponly=True, samesite="strict")
            else:
                answer.set_cookie(page.name(name), value, httponly=True, samesite="strict",
                                  path="/", secure=page.https, max_age=self.sessions.lifetime)
            answer.set_cookie(page.name(CSRF_COOKIE), secrets.token_urlsafe(24), httponly=True,
                              samesite="strict", secure=page.https, path="/")
        return answer

    async def form(self, request: Request, page: Page) -> dict[str, Any]:
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

    # -- the sessions behind the cookies ---------------------------------------------------
    def partner(self, request: Request) -> SessionClaims | None:
        """The partner's session in this browser (None: none, or no longer valid)."""
        token = self.page(request).cookie(SESSION_COOKIE)
        if not token:
            return None
        try:
            return self.sessions.partner(token)
        except DomainError:
            return None

    def enrollment(self, request: Request) -> EnrollmentSession | None:
        claims = self.partner(request)
        return claims.enrollment() if claims is not None and claims.kind == "enrollment" \
            else None

    def certificate(self, request: Request) -> tuple[CertificateSession, SessionClaims] | None:
        claims = self.partner(request)
        if claims is None or claims.kind != "certificate":
            return None
        return claims.certificate(), claims

    def ops(self, request: Request) -> tuple[OpsIdentity, SessionClaims] | None:
        """The ops page session in this browser, and who it is."""
        token = self.page(request).cookie(OPS_COOKIE)
        return self.sessions.ops(token) if token else None

    def ops_identity(self, request: Request) -> OpsIdentity | None:
        found = self.ops(request)
        return found[0] if found is not None else None


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


def error_page(request: Request, exc: DomainError) -> HTMLResponse | None:
    """A refusal on a page, as a page (None when the request was not for a page: the API
    answers problem+json)."""
    if not is_page(request):
        return None
    language = chosen_language(request)
    body = _templates.get_template("error.html").render(
        t=lambda key: text(key, language), lang=language, csrf="", texts=TEXTS,
        path="/", error=str(exc), code=exc.code)
    return HTMLResponse(body, status_code=exc.http_status,
                        headers={"Content-Security-Policy": PAGE_CSP})
