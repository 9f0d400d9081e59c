"""What relying parties talk to: the CRL and CA certificate, the status endpoint (and the OCSP role).

``serve --role ocsp`` is adapters/ocsp_server.py.
``serve --role crl`` publishes a full CRL within ``crl_delay_seconds`` of a
revocation and on schedule, and serves it at the CRL distribution point URL,
with the issuing CA certificate (AIA caIssuers) and ``/status/<serial>`` for ops
and the portal's certificate login. Neither ever answers with an HTTP 5xx for
bad input: OCSP errors are OCSP responses (malformedRequest, unauthorized,
internalError).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.ocsp_server import http_date, serve_ocsp
from adapters.persistence import status_view
from adapters.settings import Settings
from ca_core.ca import CertificateAuthority
from ca_core.certificate import serial_hex
from ca_core.x509profile import from_pem
from projections.status import RevocationStatusProjection, StatusView, catch_up

log = logging.getLogger("partner_ca.relying")
SHARD_FILE = re.compile(r"shard-\d{1,4}\.crl")

OCSP_RESPONSE = "application/ocsp-response"


# -- CRL ------------------------------------------------------------------------------
def _replace(target: Path, data: bytes) -> None:
    """Readers see the old or the new file, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


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
        entries = self.status.view.revoked_entries()
        position = self.status.view.max_tracking_id(self.ca.name) or 0
        published = self.ca.publish_crls(entries, position, self.validity)
        for shard, shard_der in published.shards.items():
            _replace(self.target.with_name(f"shard-{shard}.crl"), shard_der)
        _replace(self.target, published.full)
        der = published.full
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
        newest_revocation = self.status.view.revoked_position()
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
        """The full CRL, or a shard (``shard-<n>.crl``) when sharding is on."""
        name = request.path_params["name"]
        if name != crl_path.name and not SHARD_FILE.fullmatch(name):
            return Response(b"no such CRL\n", status_code=404, media_type="text/plain")
        authority = ca.authority()
        return _file_reply(crl_path.with_name(name), "application/pkix-crl", request,
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
        Route("/crl/{name}", crl),
        Route("/ca/issuing.cer", issuing),
        Route("/status/{serial}", status_of),
    ])


# -- the two roles --------------------------------------------------------------------
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
                  stop: threading.Event, passphrase: str | None = None) -> None:
    """Run ``ocsp`` (adapters/ocsp_server.py) or ``crl`` until ``stop`` is set."""
    if role == "ocsp":
        serve_ocsp(settings, ca, passphrase, stop)
        return
    publisher = crl_publisher(ca, settings)
    publisher.tick()
    host, _, port = settings.crl_listen.rpartition(":")
    server = uvicorn.Server(uvicorn.Config(
        crl_app(ca, publisher.target, publisher.status.view), host=host or "127.0.0.1",
        port=int(port), log_level="warning", access_log=False))
    web = threading.Thread(target=server.run, name="crl-http", daemon=True)
    web.start()
    log.info("serving crl on http://%s", settings.crl_listen)
    maintainer = threading.Thread(target=_loop, args=(publisher.tick,
                                                      settings.relying_poll_seconds, stop, role),
                                  name="crl-maintainer", daemon=True)
    maintainer.start()
    stop.wait()
    server.should_exit = True
    web.join(timeout=10)
    maintainer.join(timeout=10)
