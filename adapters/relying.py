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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.ocsp_server import http_date, serve_ocsp
from adapters.persistence import status_view
from adapters.settings import Settings
from adapters.sockets import listening_socket, shown
from ca_core.ca import CertificateAuthority, PublishedCrls
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
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def write_crls(published: PublishedCrls, target: Path, copy: Path | None = None) -> None:
    """Put a publication where it is served: the full CRL at ``target``, each shard beside it
    (``shard-<n>.crl``), every file replaced atomically; ``copy`` gets the full CRL too."""
    for shard, shard_der in published.shards.items():
        _replace(target.with_name(f"shard-{shard}.crl"), shard_der)
    _replace(target, published.full)
    if copy is not None and copy.resolve() != target.resolve():
        _replace(copy, published.full)


@dataclass(frozen=True)
class CrlFile:
    """A CRL as served: its bytes and what they say about themselves."""

    body: bytes
    etag: str
    number: int
    this_update: datetime
    next_update: datetime | None


class CrlFiles:
    """Reads served CRL files, parsed once per version of the file (stat: inode, size, mtime)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int, int], CrlFile]] = {}

    def read(self, path: Path) -> CrlFile | None:
        try:
            stat = path.stat()
            key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
            body = path.read_bytes()
        except OSError:
            return None
        try:
            crl = x509.load_der_x509_crl(body)
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        except (ValueError, x509.ExtensionNotFound):
            log.warning("%s is not a CRL of ours; it will be replaced", path)
            return None
        found = CrlFile(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', number,
                        crl.last_update_utc, crl.next_update_utc)
        self._cache[path] = (key, found)
        return found


@dataclass(frozen=True)
class CrlPublication:
    number: int
    revoked: int
    log_position: int
    crls: PublishedCrls


class CrlPublisher:
    """Keeps the served CRL current: signs the next full CRL when a revocation the served one
    lacks has been pending for ``delay``, at half its validity, and whenever the served file
    is missing or is not known to reflect the log (another process published a newer one
    somewhere else, or a publication was recorded but never written here)."""

    def __init__(self, ca: CertificateAuthority, status: RevocationStatusProjection, target: Path,
                 delay: timedelta, validity: timedelta) -> None:
        self.ca = ca
        self.status = status
        self.target = target
        self.delay = delay
        self.validity = validity
        self.pending_since: datetime | None = None
        self.files = CrlFiles()
        #: CRL number → CA log position it reflects, for the CRLs this publisher wrote
        self._reflects: dict[int, int] = {}

    def publish(self, copy: Path | None = None) -> CrlPublication:
        """Sign the next CRL from the caught-up status view and put it where it is served
        (and at ``copy``)."""
        catch_up(self.status, self.ca)
        entries = self.status.view.revoked_entries()
        position = self.status.view.max_tracking_id(self.ca.name) or 0
        published = self.ca.publish_crls(entries, position, self.validity)
        write_crls(published, self.target, copy)
        number = self.ca.authority().crl_number
        self._reflects = {number: position}
        self.pending_since = None
        log.info("CRL %d published: %d revoked, CA log position %d", number, len(entries),
                 position)
        return CrlPublication(number, len(entries), position, published)

    def served_position(self, served: CrlFile) -> int | None:
        """The CA log position the served CRL reflects, when known."""
        if served.number in self._reflects:
            return self._reflects[served.number]
        authority = self.ca.authority()
        if served.number == authority.crl_number:  # e.g. written here by `partner-ca crl`
            return authority.crl_log_position
        return None

    def tick(self) -> bool:
        """Publish if due; returns whether a CRL was published."""
        catch_up(self.status, self.ca)
        now = self.ca.clock.now()
        served = self.files.read(self.target)
        reflects = self.served_position(served) if served is not None else None
        if served is None or reflects is None or now >= served.this_update + self.validity / 2:
            self.publish()
            return True
        if self.status.view.revoked_position() > reflects:
            self.pending_since = self.pending_since or now
            if now - self.pending_since >= self.delay:
                self.publish()
                return True
        else:
            self.pending_since = None
        return False


def _crl_reply(served: CrlFile | None, request: Request) -> Response:
    if served is None:
        return Response(b"not published yet\n", status_code=404, media_type="text/plain")
    headers = {"ETag": served.etag, "Content-Type": "application/pkix-crl",
               "Last-Modified": http_date(served.this_update)}
    if served.next_update is not None:  # what this body says, not what the log says last
        headers["Expires"] = http_date(served.next_update)
        headers["Cache-Control"] = "public, no-transform, must-revalidate, max-age=" + str(
            max(0, int((served.next_update - datetime.now(UTC)).total_seconds())))
    if request.headers.get("if-none-match") == served.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(served.body, headers=headers)


def crl_app(ca: CertificateAuthority, crl_path: Path, status: StatusView) -> Starlette:
    files = CrlFiles()

    async def crl(request: Request) -> Response:
        """The full CRL, or a shard (``shard-<n>.crl``) when sharding is on."""
        name = request.path_params["name"]
        if name != crl_path.name and not SHARD_FILE.fullmatch(name):
            return Response(b"no such CRL\n", status_code=404, media_type="text/plain")
        return _crl_reply(files.read(crl_path.with_name(name)), request)

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
    sock = listening_socket(settings.crl_listen)
    server = uvicorn.Server(uvicorn.Config(
        crl_app(ca, publisher.target, publisher.status.view), log_level="warning",
        access_log=False))
    web = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="crl-http",
                           daemon=True)
    web.start()
    log.info("serving crl on http://%s", shown(sock))
    maintainer = threading.Thread(target=_loop, args=(publisher.tick,
                                                      settings.relying_poll_seconds, stop, role),
                                  name="crl-maintainer", daemon=True)
    maintainer.start()
    stop.wait()
    server.should_exit = True
    web.join(timeout=10)
    maintainer.join(timeout=10)
    sock.close()
