"""What relying parties talk to: the OCSP responder, the CRL and CA certificate, the status endpoint.

``serve --role ocsp`` answers RFC 6960 POST and RFC 5019 GET requests from the
pre-signed response store and keeps that store current (new certificates,
revocations at once, refresh at half validity, signer rotation).
``serve --role crl`` publishes a full CRL within ``crl_delay_seconds`` of a
revocation and on schedule, and serves it at the CRL distribution point URL,
with the issuing CA certificate (AIA caIssuers) and ``/status/<serial>`` for ops
and the portal's certificate login. Neither ever answers with an HTTP 5xx for
bad input: OCSP errors are OCSP responses (malformedRequest, unauthorized,
internalError).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import uvicorn
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.persistence import ocsp_store, status_view
from adapters.settings import Settings
from ca_core.ca import CertificateAuthority
from ca_core.certificate import serial_hex
from ca_core.clock import Clock
from ca_core.crl import RevokedEntry
from ca_core.ocsp import OcspRefusal, Question, Signer, parse_request, refusal, sign_response
from ca_core.x509profile import from_pem
from projections.ocsp import OcspResponseProjection, StoredResponse
from projections.status import RevocationStatusProjection, StatusView, catch_up

log = logging.getLogger("partner_ca.relying")

OCSP_RESPONSE = "application/ocsp-response"


def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


# -- OCSP -----------------------------------------------------------------------------
@dataclass
class OcspReply:
    body: bytes
    headers: dict[str, str]
    status_code: int = 200


class OcspResponder:
    """Answers OCSP requests from the response store; signs only for requests with a nonce."""

    def __init__(self, projection: OcspResponseProjection, issuer_pem: str, clock: Clock) -> None:
        self.projection = projection
        self.store = projection.view
        self.issuer = from_pem(issuer_pem)
        self.clock = clock
        self.fresh_signatures = 0  # responses signed for nonce requests (tests and metrics)

    def _lookup(self, der: bytes) -> tuple[Question, StoredResponse]:
        question = parse_request(der, self.issuer)
        row = self.store.get(question.serial)
        if row is None:  # never issued here: never "good"
            raise OcspRefusal(ocsp.OCSPResponseStatus.UNAUTHORIZED,
                              f"serial {question.serial} was not issued by this CA")
        return question, row

    def answer(self, der: bytes, if_none_match: str | None = None) -> OcspReply:
        no_store = {"Content-Type": OCSP_RESPONSE, "Cache-Control": "no-store"}
        try:
            question, row = self._lookup(der)
            if question.nonce is not None:
                self.fresh_signatures += 1
                return OcspReply(sign_response(
                    self.projection.signer(), row.answer, question.algorithm, self.clock.now(),
                    self.projection.validity, question.nonce), no_store)
            body = row.der(question.algorithm)
        except OcspRefusal as exc:
            log.info("OCSP request refused (%s): %s", exc.status.name, exc)
            return OcspReply(refusal(exc.status), no_store)
        except Exception:
            log.exception("OCSP responder failed")  # a broken store must not become an HTTP 500
            return OcspReply(refusal(ocsp.OCSPResponseStatus.INTERNAL_ERROR), no_store)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        max_age = max(0, int((row.next_update - self.clock.now()).total_seconds()))
        headers = {  # RFC 5019 §6
            "Content-Type": OCSP_RESPONSE,
            "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
            "Last-Modified": http_date(row.this_update),
            "Expires": http_date(row.next_update),
            "ETag": etag,
        }
        if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
            return OcspReply(b"", headers, 304)
        return OcspReply(body, headers)


def decode_get_path(encoded: str) -> bytes:
    """RFC 5019 §5: the URL-encoded base64 of the DER request (also accepts base64url)."""
    text = unquote(encoded).strip("/")
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4),
                                validate=True)
    except (binascii.Error, ValueError):
        return b""  # parse_request reports it as malformed


def ocsp_app(responder: OcspResponder) -> Starlette:
    def reply(result: OcspReply) -> Response:
        return Response(result.body, status_code=result.status_code, headers=result.headers)

    async def post(request: Request) -> Response:
        body = await request.body()
        return reply(responder.answer(body))

    async def get(request: Request) -> Response:
        return reply(responder.answer(decode_get_path(request.path_params["encoded"]),
                                      request.headers.get("if-none-match")))

    return Starlette(routes=[
        Route("/ocsp", post, methods=["POST"]),
        Route("/ocsp/", post, methods=["POST"]),
        Route("/ocsp/{encoded:path}", get, methods=["GET"]),
        Route("/", post, methods=["POST"]),
    ])


# -- CRL ------------------------------------------------------------------------------
class CrlPublisher:
    """Signs the next full CRL when a revocation is pending for ``delay`` or at half validity."""

    def __init__(self, ca: CertificateAuthority, status: RevocationStatusProjection, target: Path,
                 delay: timedelta, validity: timedelta) -> None:
        self.ca = ca
        self.status = status
        self.target = target
        self.delay = delay
        self.validity = validity
        self.pending_since: datetime | None = None

    def publish(self) -> bytes:
        catch_up(self.status, self.ca)
        rows = self.status.view.rows()
        entries = [RevokedEntry(r.serial, r.changed_at or r.not_before, r.reason or "unspecified")
                   for r in rows if r.status == "revoked"]
        position = self.status.view.max_tracking_id(self.ca.name) or 0
        der = self.ca.publish_crl(entries, position, self.validity)
        tmp = self.target.with_suffix(".tmp")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(der)
        os.replace(tmp, self.target)  # readers see the old or the new CRL, never half of one
        self.pending_since = None
        log.info("CRL %d published: %d revoked, CA log position %d",
                 self.ca.authority().crl_number, len(entries), position)
        return der

    def tick(self) -> bool:
        """Publish if due; returns whether a CRL was published."""
        catch_up(self.status, self.ca)
        authority = self.ca.authority()
        now = self.ca.clock.now()
        if not self.target.exists() or authority.crl_this_update is None or (
                now >= authority.crl_this_update + self.validity / 2):
            self.publish()
            return True
        newest_revocation = max((r.cause_position for r in self.status.view.rows()
                                 if r.status == "revoked"), default=0)
        if newest_revocation > authority.crl_log_position:
            self.pending_since = self.pending_since or now
            if now - self.pending_since >= self.delay:
                self.publish()
                return True
        return False


def _file_reply(path: Path, content_type: str, request: Request,
                last_modified: datetime | None, expires: datetime | None) -> Response:
    try:
        body = path.read_bytes()
    except OSError:
        return Response(b"not published yet\n", status_code=404, media_type="text/plain")
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Content-Type": content_type}
    if last_modified is not None:
        headers["Last-Modified"] = http_date(last_modified)
    if expires is not None:
        headers["Expires"] = http_date(expires)
        headers["Cache-Control"] = "public, no-transform, must-revalidate, max-age=" + str(
            max(0, int((expires - datetime.now(UTC)).total_seconds())))
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(body, headers=headers)


def crl_app(ca: CertificateAuthority, crl_path: Path, status: StatusView) -> Starlette:
    async def crl(request: Request) -> Response:
        authority = ca.authority()
        return _file_reply(crl_path, "application/pkix-crl", request,
                           authority.crl_this_update, authority.crl_next_update)

    async def issuing(request: Request) -> Response:
        der = from_pem(ca.authority().issuing_certificate_pem).public_bytes(Encoding.DER)
        return Response(der, media_type="application/pkix-cert")

    async def status_of(request: Request) -> Response:
        text = request.path_params["serial"].lower().removeprefix("0x")
        try:
            serial = serial_hex(int(text, 16))
        except ValueError:
            return JSONResponse({"error": f"not a hexadecimal serial: {text[:80]!r}"}, 400)
        at = request.query_params.get("at")
        if at is not None:
            try:
                moment = datetime.fromisoformat(at)
            except ValueError:
                return JSONResponse({"error": f"'at' is not an ISO 8601 timestamp: {at!r}"}, 400)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            found = ca.status_at(serial, moment)
            return JSONResponse({**vars(found), "at": found.at.isoformat(),
                                 "decided_at": found.decided_at.isoformat()
                                 if found.decided_at else None})
        row = status.get(serial)
        if row is None:
            return JSONResponse({"serial": serial, "status": "unknown"}, 404)
        effective = "expired" if row.status == "good" and ca.clock.now() > row.not_after \
            else row.status
        data: dict[str, Any] = {k: (v.isoformat() if isinstance(v, datetime) else str(v)
                                    if k == "request_id" else v) for k, v in vars(row).items()}
        return JSONResponse({**data, "status": effective})

    return Starlette(routes=[
        Route("/crl/issuing.crl", crl),
        Route("/ca/issuing.cer", issuing),
        Route("/status/{serial}", status_of),
    ])


# -- the two roles --------------------------------------------------------------------
class SignerCache:
    """The current delegated signer, read once; the maintainer rotates it (never a request)."""

    def __init__(self, ca: CertificateAuthority, settings: Settings) -> None:
        self.ca = ca
        self.validity = timedelta(days=settings.ocsp_signer_days)
        self.renew = timedelta(days=settings.ocsp_signer_renew_days)
        self._current: Signer | None = None

    def __call__(self) -> Signer:
        if self._current is None:
            self.rotate()
        assert self._current is not None
        return self._current

    def rotate(self) -> None:
        """Issue a new signer when the current one is near its end (recorded as an event)."""
        self._current = self.ca.ocsp_signer(self.validity, self.renew)


def ocsp_responder(ca: CertificateAuthority, settings: Settings) -> OcspResponder:
    projection = OcspResponseProjection(ocsp_store(settings.store_url("ca"), settings.data_dir))
    projection.clock = ca.clock
    projection.validity = timedelta(hours=settings.ocsp_validity_hours)
    projection.signer = SignerCache(ca, settings)
    return OcspResponder(projection, ca.authority().issuing_certificate_pem, ca.clock)


def maintain_ocsp(responder: OcspResponder, ca: CertificateAuthority) -> int:
    """One maintenance step: rotate the signer if due, sign what is new, refresh what is old."""
    signers = responder.projection.signer
    if isinstance(signers, SignerCache):
        signers.rotate()
    done = catch_up(responder.projection, ca)
    while (refreshed := responder.projection.refresh()) > 0:
        done += refreshed
    return done


def crl_publisher(ca: CertificateAuthority, settings: Settings) -> CrlPublisher:
    status = RevocationStatusProjection(status_view(settings.store_url("ca"), settings.data_dir))
    return CrlPublisher(ca, status, settings.data_dir / "crl" / "issuing.crl",
                        timedelta(seconds=settings.crl_delay_seconds),
                        timedelta(hours=settings.crl_validity_hours))


def _loop(step: Any, interval: float, stop: threading.Event, name: str) -> None:
    while not stop.is_set():
        try:
            step()
        except Exception:
            log.exception("%s maintenance failed; will try again", name)
        stop.wait(interval)


def serve_relying(role: str, settings: Settings, ca: CertificateAuthority,
                  stop: threading.Event) -> None:
    """Run ``ocsp`` or ``crl`` until ``stop`` is set."""
    if role == "ocsp":
        responder = ocsp_responder(ca, settings)
        maintain_ocsp(responder, ca)  # signer and responses ready before the first request
        app = ocsp_app(responder)
        listen = settings.ocsp_listen

        def step() -> None:
            maintain_ocsp(responder, ca)
    else:
        publisher = crl_publisher(ca, settings)
        publisher.tick()
        app = crl_app(ca, publisher.target, publisher.status.view)
        listen = settings.crl_listen
        step = publisher.tick  # type: ignore[assignment]
    host, _, port = listen.rpartition(":")
    server = uvicorn.Server(uvicorn.Config(app, host=host or "127.0.0.1", port=int(port),
                                           log_level="warning", access_log=False))
    web = threading.Thread(target=server.run, name=f"{role}-http", daemon=True)
    web.start()
    log.info("serving %s on http://%s", role, listen)
    maintainer = threading.Thread(target=_loop, args=(step, settings.relying_poll_seconds, stop,
                                                      role), name=f"{role}-maintainer",
                                  daemon=True)
    maintainer.start()
    stop.wait()
    server.should_exit = True
    web.join(timeout=10)
    maintainer.join(timeout=10)
