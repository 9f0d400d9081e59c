"""The portal's HTTP API (FastAPI): the user manual's chapters over HTTP, errors as RFC 9457 problems.

Sessions are stateless bearer tokens signed with the portal secret
(itsdangerous): an OTP login opens an *enrollment* session (one certificate
request), a certificate login (R5) a *certificate* session (renewal, revocation,
pickup). The OpenAPI description is served at ``/openapi.json`` (docs at
``/docs``). Every refusal is ``application/problem+json`` with a stable ``type``
(``urn:partner-ca:problem:<code>``) and the rule's ``code``.
"""
# No ``from __future__ import annotations`` here: FastAPI reads the dependencies in the
# endpoints' annotations, which name functions local to the route builders.


import base64
import binascii
import ipaddress
import logging
import sqlite3
import threading
import time
import urllib.parse
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, Literal, Protocol
from uuid import UUID, uuid4

import psycopg
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from eventsourcing.persistence import IntegrityError
from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from adapters.portal.ops_auth import OpsIdentity, OpsTokens
from adapters.portal.refusal import floored_login
from adapters.portal.web import STATIC, error_page, is_page, web_routes
from ca_core.certificate import RevocationReason, parse_serial
from ca_core.errors import (
    Conflict,
    DomainError,
    NotAuthenticated,
    NotFound,
    NotReady,
    TooManyAttempts,
)
from ca_core.portal import (
    CertificateSession,
    ChallengeRefused,
    EnrollmentSession,
    OpenSession,
    Portal,
)
from ca_core.x509profile import from_pem

PROBLEM = "application/problem+json"
#: attempts per client address on the login and pickup-link calls, per sliding window (s)
ATTEMPTS_PER_ADDRESS, ATTEMPTS_WINDOW = 20, 60.0
#: a refused OTP login is answered no sooner than this (s) after it came in (issue 16)
OTP_REFUSAL_SECONDS = 0.25
MAX_BODY = 64 * 1024  # a CSR is about 1 KiB; nothing this API takes is larger

TITLES = {400: "Malformed request", 401: "Not authenticated", 403: "Refused",
          404: "Not found", 405: "Method not allowed", 409: "Conflict",
          413: "Request too large", 422: "Refused by a rule", 429: "Too many attempts",
          503: "Not ready"}


log = logging.getLogger(__name__)
#: what a store that went away answers: every class the drivers and the library raise for it
StoreUnavailable = (StoreOperationalError, StoreInterfaceError, psycopg.OperationalError,
                    psycopg.InterfaceError, PoolTimeout, sqlite3.OperationalError)
#: seconds a client is asked to wait when the store is away
RETRY_AFTER_SECONDS = 5


def problem(code: str, detail: str, status: int) -> JSONResponse:
    """An RFC 9457 problem; a domain error's status comes from its class (``http_status``)."""
    return JSONResponse({"type": f"urn:partner-ca:problem:{code}", "title": TITLES.get(
        status, "Error"), "status": status, "detail": detail, "code": code},
        status_code=status, media_type=PROBLEM)


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str


# -- request and response bodies -----------------------------------------------------
class OtpLogin(BaseModel):
    user_id: str = Field(min_length=1, max_length=64)
    otp: str = Field(min_length=1, max_length=64)
    module: str | None = Field(default=None, min_length=1, max_length=32,
                               description="the module the OTP is for: a wrong OTP then counts "
                                           "against that module's OTP only")


class CertificateLogin(BaseModel):
    certificate_pem: str = Field(max_length=16_000)
    challenge: str = Field(max_length=200)
    signature_b64: str = Field(max_length=2_000, description="base64 signature over the challenge")


class SessionOut(BaseModel):
    token: str
    kind: Literal["enrollment", "certificate"]
    user_id: str
    module: str
    expires_in: int
    serial: str | None = None


class CertificateRequestIn(BaseModel):
    csr_pem: str = Field(max_length=16_000)
    revocation_password: str = Field(max_length=200)
    revocation_password_again: str = Field(max_length=200)


class RequestAccepted(BaseModel):
    request_id: UUID
    status_url: str


class RequestStatus(BaseModel):
    request_id: UUID
    state: str
    serial: str | None = None
    certificate_status: str | None = None
    rejection: str | None = None


class Certificate(BaseModel):
    request_id: UUID
    serial: str
    certificate_pem: str
    chain_pem: str


class PickupIn(BaseModel):
    token: str = Field(min_length=1, max_length=200)


class RevocationIn(BaseModel):
    revocation_password: str = Field(max_length=200)
    reason: Literal["unspecified", "keyCompromise", "affiliationChanged", "superseded",
                    "cessationOfOperation"] = "unspecified"


class PartnerIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    modules: list[str] = Field(min_length=1, max_length=20)
    language: Literal["cs", "en"] = "cs"


class PartnerOut(BaseModel):
    user_id: str
    modules: list[str]
    registered_by: str


class OtpIn(BaseModel):
    module: str = Field(min_length=1, max_length=32)


class OtpOut(BaseModel):
    user_id: str
    module: str
    otp: str = Field(description="shown once; only its hash is stored")
    issued_by: str


class OpsRevocationIn(BaseModel):
    reason: RevocationReason


class CertificateStatusOut(BaseModel):
    serial: str
    user_id: str
    module: str
    status: str
    revocation_pending: bool
    not_after: str | None


class Challenge(BaseModel):
    challenge: str


class Accepted(BaseModel):
    status: str


# -- limits -------------------------------------------------------------------------
class Attempts(Protocol):
    """Counts attempts per key; ``allow`` is False once the limit is reached. In production a
    table every portal process shares (adapters/storage/attempts.py)."""

    def allow(self, key: str) -> bool: ...


class AttemptLimiter:
    """At most ``limit`` attempts per key in a sliding ``window`` (seconds), in this process's
    memory (tests, and a single process without ``attempts``)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.attempts: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            seen = self.attempts[key]
            while seen and now - seen[0] > self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                return False
            seen.append(now)
            return True


class BodyLimit:
    """ASGI middleware: bodies over ``limit`` bytes get 413, whether announced by Content-Length
    or streamed in chunks (the chunks are counted as they arrive)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = problem("body-too-large", f"request bodies are limited to {self.limit} bytes",
                            413)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await too_large(scope, receive, send)
            return
        # read the whole (small) body first, counting; the app then gets it replayed
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await too_large(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class SecurityHeaders:
    """ASGI middleware: the headers every answer carries. Nothing here is for a frame or a
    cache (tokens, certificates, pickup answers); HSTS when the client came over HTTPS
    through a trusted proxy (X-Forwarded-Proto) or directly."""

    FIXED: ClassVar[list[tuple[bytes, bytes]]] = [(b"x-content-type-options", b"nosniff"),
             (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
             (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
             (b"cache-control", b"no-store")]
    HSTS = (b"strict-transport-security", b"max-age=31536000")

    def __init__(self, app: Any, sessions: "Sessions") -> None:
        self.app, self.sessions = app, sessions

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        peer = (scope.get("client") or ("",))[0]
        if not https and self.sessions._trusted(peer):
            proto = dict(scope["headers"]).get(b"x-forwarded-proto", b"")
            https = proto.split(b",")[-1].strip() == b"https"
        extra = self.FIXED + ([self.HSTS] if https else [])
        docs = scope["path"] in ("/docs", "/redoc")  # FastAPI's pages need their scripts

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(
                    (k, v) for k, v in extra if k not in names
                    and not (docs and k == b"content-security-policy"))]
            await send(message)

        await self.app(scope, receive, with_headers)


class Sessions:
    """Stateless bearer sessions signed with the portal secret (itsdangerous), and the
    per-address attempt limit; its methods are the endpoints' FastAPI dependencies."""

    def __init__(self, portal: Portal, attempts_per_address: int,
                 attempts_window: float, trusted_proxies: Sequence[str] = (),
                 attempts: Attempts | None = None) -> None:
        self.portal = portal
        self.serializer = URLSafeTimedSerializer(portal.secret, salt="partner-ca portal session")
        self.lifetime = int(portal.rules.session_lifetime.total_seconds())
        self.by_address: Attempts = attempts or AttemptLimiter(attempts_per_address,
                                                               attempts_window)
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def open(self, data: dict[str, Any]) -> str:
        """A new session, recorded (``PortalSession``), and its token; ``i`` names it."""
        session_id = str(uuid4())
        self.portal.open_session(session_id, data["u"], data["k"], data["m"], data.get("s"))
        return self.serializer.dumps({**data, "i": session_id})

    def client_address(self, request: Request) -> str:
        """The real client: the peer, unless the peer is a trusted proxy; then the nearest
        address in X-Forwarded-For that is not one (a client cannot choose its bucket by
        sending the header itself: only trusted proxies' additions count)."""
        peer = request.client.host if request.client else "unknown"
        if not self._trusted(peer):
            return peer
        hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for"))
                .split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return peer

    def from_trusted_proxy(self, request: Request) -> bool:
        return bool(request.client) and self._trusted(request.client.host)  # type: ignore[union-attr]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)

    def session(self, authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """A partner's session (enrollment or certificate) from its bearer token."""
        if not authorization or not authorization.startswith("Bearer "):
            raise NotAuthenticated("log in first (Authorization: Bearer <token>)",
                                   code="session-required")
        data = self._load(authorization[7:])
        if data.get("k") not in ("enrollment", "certificate"):
            raise NotAuthenticated("the session token is not valid", code="session-required")
        if data.get("k") == "certificate":  # it lasts only as long as its certificate
            self.portal.check_certificate_session(CertificateSession(
                data["u"], data["m"], data["s"], UUID(data["r"])))
        return data

    def _load(self, token: str) -> dict[str, Any]:
        """A signed session token's claims, checked against the recorded session."""
        try:
            data: dict[str, Any] = self.serializer.loads(token, max_age=self.lifetime)
        except SignatureExpired:
            raise NotAuthenticated("the session has expired; log in again",
                                   code="session-expired") from None
        except BadSignature:
            raise NotAuthenticated("the session token is not valid",
                                   code="session-required") from None
        if "i" not in data or "u" not in data:
            raise NotAuthenticated("the session token is not valid", code="session-required")
        self.portal.check_session_open(data["i"], data["u"])
        return data

    def open_ops(self, who: OpsIdentity) -> str:
        """An ops page session for a token just checked: recorded (``SessionOpened``, kind
        ``ops``), short (the session lifetime), bound to that token; the browser keeps this,
        never the long-lived ops token."""
        session_id = str(uuid4())
        self.portal.open_session(session_id, f"ops:{who.name}", "ops", "", None)
        return self.serializer.dumps({"k": "ops", "u": f"ops:{who.name}", "i": session_id,
                                      "t": who.token_id})

    def ops_session(self, token: str, ops_tokens: OpsTokens | None
                    ) -> tuple[OpsIdentity, str] | None:
        """(identity, session id) of an open ops page session, or None."""
        try:
            data = self._load(token)
        except DomainError:
            return None
        if data.get("k") != "ops" or ops_tokens is None:
            return None
        who = ops_tokens.session_identity(str(data["u"]).removeprefix("ops:"),
                                          str(data.get("t", "")))
        return (who, str(data["i"])) if who is not None else None

    def enrollment(self, authorization: Annotated[str | None, Header()] = None
                   ) -> EnrollmentSession:
        data = self.session(authorization)
        if data.get("k") != "enrollment":
            raise NotAuthenticated("this needs an OTP login (enrollment session)",
                                   code="session-required")
        return EnrollmentSession(UUID(data["o"]), data["u"], data["m"])

    def certificate(self, authorization: Annotated[str | None, Header()] = None
                    ) -> CertificateSession:
        data = self.session(authorization)
        if data.get("k") != "certificate":
            raise NotAuthenticated("this needs a certificate login", code="session-required")
        found = CertificateSession(data["u"], data["m"], data["s"], UUID(data["r"]))
        self.portal.check_certificate_session(found)  # revoked or expiring ends the session
        return found

    def check_address(self, request: Request) -> None:
        if not self.by_address.allow(self.client_address(request)):
            raise TooManyAttempts("too many attempts from this address; wait a minute")


def portal_api(portal: Portal, *, ops_tokens: OpsTokens | None = None,
               attempts_per_address: int = ATTEMPTS_PER_ADDRESS,
               attempts_window: float = ATTEMPTS_WINDOW,
               trusted_proxies: Sequence[str] = (), api_docs: bool = False,
               attempts: Attempts | None = None,
               otp_refusal_seconds: float = OTP_REFUSAL_SECONDS,
               audit_apps: Callable[[], list[Any]] | None = None) -> FastAPI:
    """The portal API for one Portal application (ops endpoints when ``ops_tokens`` is given).

    ``trusted_proxies``: addresses or networks whose X-Forwarded-For / X-Forwarded-Proto are
    believed (default: none). ``api_docs``: serve ``/docs`` and ``/redoc`` (FastAPI's pages
    load their scripts from a public CDN, so they are off unless asked for);
    ``/openapi.json`` is always there. ``otp_refusal_seconds``: the least time before a
    refused OTP login is answered (known and unknown user ids alike)."""
    sessions = Sessions(portal, attempts_per_address, attempts_window, trusted_proxies,
                        attempts)
    app = FastAPI(title="Partner CA portal API", version="1",
                  docs_url="/docs" if api_docs else None,
                  redoc_url="/redoc" if api_docs else None,
                  description=(__doc__ or "").split("\n\n", 1)[-1],
                  responses={code: {"description": TITLES.get(code, "Error"), "content": {
                      PROBLEM: {"schema": Problem.model_json_schema()}}}
                      for code in (400, 401, 403, 404, 405, 409, 413, 422, 429, 503)})
    _answer_with_problems(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_middleware(SecurityHeaders, sessions=sessions)
    app.include_router(_partner_routes(portal, sessions, otp_refusal_seconds))
    app.include_router(_chain_routes(portal))
    app.include_router(_ops_routes(portal, ops_tokens))
    app.include_router(web_routes(portal, sessions, ops_tokens, otp_refusal_seconds,
                                  audit_apps))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _answer_with_problems(app: FastAPI) -> None:
    """Every refusal as ``application/problem+json``; a domain error's status is its class's."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        if is_page(request):  # a browser on one of the pages: the error as a page
            return error_page(request, exc)
        return problem(exc.code, str(exc), exc.http_status)

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


def _partner_routes(portal: Portal, sessions: Sessions,
                    otp_refusal_seconds: float) -> APIRouter:
    """The manual's chapters 3–8 for partners: logins, request, pickup, renewal, revocation."""
    api = APIRouter()
    lifetime = sessions.lifetime
    session, enrollment, certificate = sessions.session, sessions.enrollment, sessions.certificate
    check_address = sessions.check_address

    def certificate_session(found: CertificateSession) -> SessionOut:
        """A certificate session opened (R5), however the certificate was proven."""
        token = sessions.open({"k": "certificate", "u": found.user_id, "m": found.module,
                               "s": found.serial, "r": str(found.request_id)})
        return SessionOut(token=token, kind="certificate", user_id=found.user_id,
                          module=found.module, expires_in=lifetime, serial=found.serial)

    # chapter 3: OTP login -----------------------------------------------------------------
    @api.post("/v1/sessions/otp", response_model=SessionOut, status_code=201, tags=["login"],
              dependencies=[Depends(check_address)])
    async def login_with_otp(body: OtpLogin) -> SessionOut:
        """R2: user identifier + one-time password → an enrollment session (one request).

        A refusal is answered no sooner than ``otp_refusal_seconds`` after the call began:
        a registered user's wrong OTP records an attempt (a write) and an unknown id has
        nothing to record, so without the floor the answer's time would tell them apart.
        The wait is asynchronous: waiting refusals hold no worker thread."""
        found = await floored_login(
            lambda: portal.login_with_otp(body.user_id, body.otp, body.module),
            otp_refusal_seconds)
        token = sessions.open({"k": "enrollment", "u": found.user_id, "m": found.module,
                                "o": str(found.otp_id)})
        return SessionOut(token=token, kind="enrollment", user_id=found.user_id,
                          module=found.module, expires_in=lifetime)

    # chapter 4: certificate request, status, pickup ----------------------------------
    @api.post("/v1/requests", response_model=RequestAccepted, status_code=202, tags=["request"])
    def submit_request(body: CertificateRequestIn,
                       who: Annotated[EnrollmentSession, Depends(enrollment)]) -> RequestAccepted:
        """R3: the CSR and the revocation password twice; issuance is asynchronous."""
        request_id = portal.submit_request(who, body.csr_pem, body.revocation_password,
                                           body.revocation_password_again)
        return RequestAccepted(request_id=request_id, status_url=f"/v1/requests/{request_id}")

    def owned(request_id: UUID, user_id: str) -> Any:
        request = portal.request(request_id)
        if request.user_id != user_id:
            raise NotFound(f"no request {request_id}", code="request-unknown")
        return request

    @api.get("/v1/requests/{request_id}", response_model=RequestStatus, tags=["request"])
    def request_status(request_id: UUID,
                       data: Annotated[dict[str, Any], Depends(session)]) -> RequestStatus:
        """Where the request is (submitted, issued, rejected, picked up); poll while waiting."""
        request = owned(request_id, data["u"])
        return RequestStatus(request_id=request_id, state=request.state, serial=request.serial,
                             certificate_status=request.certificate_status,
                             rejection=getattr(request, "rejection", None))

    @api.get("/v1/requests/{request_id}/certificate", response_model=Certificate,
             tags=["request"])
    def pickup(request_id: UUID,
               data: Annotated[dict[str, Any], Depends(session)]) -> Certificate:
        """R4: pickup while logged in (either session of the same user)."""
        picked = portal.pickup(request_id, data["u"])
        return Certificate(request_id=picked.request_id, serial=picked.serial,
                           certificate_pem=picked.certificate_pem, chain_pem=picked.chain_pem)

    @api.post("/v1/pickup/{request_id}", response_model=Certificate, tags=["request"],
              dependencies=[Depends(check_address)])
    def pickup_with_link(request_id: UUID, body: PickupIn) -> Certificate:
        """R4: the request id and token of the single-use e-mailed link (the link itself,
        ``/pickup/<request id>?token=…``, opens a page with a button)."""
        picked = portal.pickup_with_link(request_id, body.token)
        return Certificate(request_id=picked.request_id, serial=picked.serial,
                           certificate_pem=picked.certificate_pem, chain_pem=picked.chain_pem)

    @api.get("/v1/pickup/{request_id}", tags=["request"], deprecated=True,
             response_class=RedirectResponse, status_code=303)
    def pickup_with_link_get(request_id: UUID, token: str = "") -> RedirectResponse:
        """Links mailed before the pages existed: to the pickup page (a GET never uses a
        link up)."""
        return RedirectResponse(f"/pickup/{request_id}?{urllib.parse.urlencode({'token': token})}",
                                status_code=303)

    # chapter 5: certificate login ----------------------------------------------------------
    @api.get("/v1/challenge", response_model=Challenge, tags=["login"])
    def challenge(serial: str | None = None) -> Challenge:
        """A fresh challenge to sign with the token key: valid 5 minutes, good for one login;
        with ``serial``, only for that certificate."""
        return Challenge(challenge=portal.new_challenge(parse_serial(serial) if serial else ""))

    @api.delete("/v1/session", status_code=204, tags=["login"], response_class=Response)
    def logout(data: Annotated[dict[str, Any], Depends(session)]) -> Response:
        """End this session (either kind); the token is refused from now on."""
        portal.end_session(data["i"], f"user:{data['u']}")
        return Response(status_code=204)

    @api.post("/v1/sessions/certificate", response_model=SessionOut, status_code=201,
              tags=["login"], dependencies=[Depends(check_address)])
    def login_with_certificate(body: CertificateLogin) -> SessionOut:
        """R5: the certificate, and the challenge signed by its key; status checked (view)."""
        try:
            signature = base64.b64decode(body.signature_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ChallengeRefused("signature_b64 is not base64",
                                   code="challenge-signature-invalid") from None
        return certificate_session(
            portal.login_with_certificate(body.certificate_pem, body.challenge, signature))

    @api.post("/v1/sessions/tls-client", response_model=SessionOut, status_code=201,
              tags=["login"], dependencies=[Depends(check_address)])
    def login_with_tls_client(request: Request) -> SessionOut:
        """R5, chapter 6 behind the TLS proxy: the certificate the proxy verified in the TLS
        handshake (``X-Client-Verify``, ``X-Client-Certificate``), believed only from a
        trusted proxy (docs/operations.md)."""
        if not sessions.from_trusted_proxy(request):
            raise NotAuthenticated("a TLS client certificate is taken only from the trusted "
                                   "TLS proxy", code="tls-client-untrusted")
        pem = urllib.parse.unquote(request.headers.get("x-client-certificate", ""))
        if request.headers.get("x-client-verify") != "SUCCESS" or not pem:
            raise NotAuthenticated("the TLS proxy verified no client certificate",
                                   code="tls-client-missing")
        found = portal.login_with_verified_certificate(pem)
        return certificate_session(found)

    # chapters 7, 8: renewal and revocation ---------------------------------------------------
    @api.post("/v1/renewals", response_model=RequestAccepted, status_code=202, tags=["renewal"])
    def renew(body: CertificateRequestIn,
              who: Annotated[CertificateSession, Depends(certificate)]) -> RequestAccepted:
        """R7: a new request while the current certificate is still valid."""
        request_id = portal.request_renewal(who, body.csr_pem, body.revocation_password,
                                            body.revocation_password_again)
        return RequestAccepted(request_id=request_id, status_url=f"/v1/requests/{request_id}")

    @api.post("/v1/revocations", response_model=Accepted, status_code=202, tags=["revocation"])
    def revoke(body: RevocationIn,
               who: Annotated[CertificateSession, Depends(certificate)]) -> Accepted:
        """R9: revoke the logged-in certificate with its revocation password."""
        portal.revoke(who, body.revocation_password, body.reason)
        return Accepted(status="revocation requested")

    return api


def _chain_routes(portal: Portal) -> APIRouter:
    """R12: the CA chain, public."""
    api = APIRouter()

    # R12: the chain ------------------------------------------------------------------------
    @api.get("/v1/chain.pem", tags=["chain"], response_class=Response,
             responses={200: {"content": {"application/pem-certificate-chain": {}}}})
    def chain_pem() -> Response:
        """The issuing CAs (the current one first; two for a while after a rollover), then
        the root, PEM."""
        return Response(portal.chain().chain_pem, media_type="application/pem-certificate-chain")

    @api.get("/v1/chain.p7b", tags=["chain"], response_class=Response,
             responses={200: {"content": {"application/pkcs7-mime": {}}}})
    def chain_pkcs7() -> Response:
        """The issuing CAs and the root as a degenerate PKCS#7 (certs-only), DER."""
        trust = portal.chain()
        der = pkcs7.serialize_certificates([*map(from_pem, trust.issuing_pems),
                                            from_pem(trust.root_pem)], Encoding.DER)
        return Response(der, media_type="application/pkcs7-mime")

    return api


def _ops_routes(portal: Portal, ops_tokens: OpsTokens | None) -> APIRouter:
    """Module administrators and operators, with ops API tokens (none given: every call 401)."""
    api = APIRouter()

    # ops: module administrators and operators (API tokens) ---------------------------
    def ops(authorization: Annotated[str | None, Header()] = None) -> OpsIdentity:
        found = None
        if ops_tokens is not None and authorization and authorization.startswith("Bearer "):
            found = ops_tokens.authenticate(authorization[7:])
        if found is None:
            raise NotAuthenticated("an ops API token is required", code="ops-token-required")
        return found

    @api.post("/v1/ops/partners", response_model=PartnerOut, status_code=201, tags=["ops"])
    def register_partner(body: PartnerIn,
                         who: Annotated[OpsIdentity, Depends(ops)]) -> PartnerOut:
        """Register a user in modules (an administrator of each module, or an operator)."""
        for module in body.modules:
            who.check_module(module)
        partner = portal.register_partner(body.user_id, body.email, body.modules, body.language,
                                          registered_by=f"ops:{who.name}")
        return PartnerOut(user_id=partner.user_id, modules=partner.modules,
                          registered_by=f"ops:{who.name}")

    @api.post("/v1/ops/partners/{user_id}/otps", response_model=OtpOut, status_code=201,
              tags=["ops"])
    def issue_otp(user_id: str, body: OtpIn,
                  who: Annotated[OpsIdentity, Depends(ops)]) -> OtpOut:
        """R1: issue or reissue the OTP of a user in a module (shown once)."""
        who.check_module(body.module)
        who.check_sees_partner(portal, user_id)
        _, otp = portal.issue_otp(user_id, body.module, issued_by=f"ops:{who.name}")
        return OtpOut(user_id=user_id, module=body.module, otp=otp, issued_by=f"ops:{who.name}")

    @api.get("/v1/ops/certificates/{serial}", response_model=CertificateStatusOut, tags=["ops"])
    def certificate_status(serial: str,
                           who: Annotated[OpsIdentity, Depends(ops)]) -> CertificateStatusOut:
        """A certificate as the portal knows it (the CRL server's /status has the CA's view)."""
        who.check_operator()
        request = portal.request_for_serial(parse_serial(serial))
        return CertificateStatusOut(
            serial=request.serial, user_id=request.user_id, module=request.module,
            status=request.certificate_status or "unknown",
            revocation_pending=request.revocation_pending,
            not_after=request.not_after.isoformat() if request.not_after else None)

    @api.post("/v1/ops/certificates/{serial}/revocation", response_model=Accepted,
              status_code=202, tags=["ops"])
    def revoke_as_operator(serial: str, body: OpsRevocationIn,
                           who: Annotated[OpsIdentity, Depends(ops)]) -> Accepted:
        """R10: revoke with an RFC 5280 reason; the operator is recorded by the CA."""
        who.check_operator()
        portal.revoke_as_operator(parse_serial(serial), body.reason, who.name)
        return Accepted(status="revocation requested")

    @api.post("/v1/ops/certificates/{serial}/revocation-unlock", response_model=Accepted,
              tags=["ops"])
    def unlock_revocation(serial: str, who: Annotated[OpsIdentity, Depends(ops)]) -> Accepted:
        """R9: lift the lock after too many wrong revocation passwords (an operator)."""
        who.check_operator()
        changed = portal.unlock_revocation(parse_serial(serial), who.name)
        return Accepted(status="unlocked" if changed else "was not locked")

    @api.get("/v1/ops/partners/{user_id}/sessions", response_model=list[OpenSession],
             tags=["ops"])
    def list_sessions(user_id: str,
                      who: Annotated[OpsIdentity, Depends(ops)]) -> list[OpenSession]:
        """The user's open sessions (an operator)."""
        who.check_operator()
        return portal.sessions_of(user_id)

    @api.delete("/v1/ops/sessions/{session_id}", response_model=Accepted, tags=["ops"])
    def end_one_session(session_id: UUID,
                        who: Annotated[OpsIdentity, Depends(ops)]) -> Accepted:
        """End one session (an operator)."""
        who.check_operator()
        ended = portal.end_session(str(session_id), f"operator:{who.name}")
        return Accepted(status="session ended" if ended else "no such open session")

    @api.delete("/v1/ops/partners/{user_id}/sessions", response_model=Accepted, tags=["ops"])
    def end_sessions(user_id: str, who: Annotated[OpsIdentity, Depends(ops)]) -> Accepted:
        """End every session of a user opened until now (an operator)."""
        who.check_operator()
        portal.end_sessions(user_id, f"operator:{who.name}")
        return Accepted(status="sessions ended")

    return api
