"""What relying parties talk to: the CRL and CA certificate, the status endpoint (and the OCSP role).

``serve --role ocsp`` serves ocsp_http.py; both roles are started by
adapters/entrypoints/relying_wiring.py.
``serve --role crl`` publishes a full CRL within ``crl_delay_seconds`` of a
revocation and on schedule, and serves it at the CRL distribution point URL,
with the issuing CA certificate (AIA caIssuers) and ``/status/<serial>`` for ops
and the portal's certificate login. Neither ever answers with an HTTP 5xx for
bad input: OCSP errors are OCSP responses (malformedRequest, unauthorized,
internalError).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.relying.http_date import http_date
from adapters.storage.crl_files import CrlFile, CrlFiles
from ca_core.ca import CertificateAuthority
from ca_core.certificate import CertificateStatus, SerialInvalid, effective_status, parse_serial
from ca_core.x509profile import from_pem
from projections.status import StatusView

log = logging.getLogger("partner_ca.relying")
SHARD_FILE = re.compile(r"shard-\d{1,4}(-g\d{1,4})?\.crl")
#: the full CRL of a later issuing CA, beside the first one's (ca_core/authority.py)
LATER_CRL = re.compile(r"issuing-g\d{1,4}\.crl")
CA_FILE = re.compile(r"issuing(-g(\d{1,4}))?\.cer")

OCSP_RESPONSE = "application/ocsp-response"


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
        if name != crl_path.name and not SHARD_FILE.fullmatch(name) and not \
                LATER_CRL.fullmatch(name):
            return Response(b"no such CRL\n", status_code=404, media_type="text/plain")
        return _crl_reply(files.read(crl_path.with_name(name)), request)

    async def issuing(request: Request) -> Response:
        """An issuing CA certificate (AIA caIssuers): ``issuing.cer`` the first,
        ``issuing-g<g>.cer`` the later ones."""
        named = CA_FILE.fullmatch(request.path_params["name"])
        found = ca.authority().issuing.get(int(named.group(2) or 0)) if named else None
        if found is None:
            return Response(b"no such CA certificate\n", status_code=404,
                            media_type="text/plain")
        der = from_pem(found.certificate_pem).public_bytes(Encoding.DER)
        return Response(der, media_type="application/pkix-cert")

    async def status_of(request: Request) -> Response:
        try:
            serial = parse_serial(request.path_params["serial"])
        except SerialInvalid as exc:
            return JSONResponse({"error": str(exc)}, 400)
        at = request.query_params.get("at")
        if at is not None:
            try:
                moment = datetime.fromisoformat(at)
            except ValueError:
                return JSONResponse({"error": f"'at' is not an ISO 8601 timestamp: {at!r}"}, 400)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            found = ca.status_at(serial, moment)
            revoked = found.status == CertificateStatus.REVOKED
            return JSONResponse(_public(serial, found.status, found.reason if revoked else None,
                                        found.decided_at if revoked else None,
                                        at=found.at.isoformat()))
        row = status.get(serial)
        if row is None:
            return JSONResponse({"serial": serial, "status": "unknown"}, 404)
        effective = effective_status(row.status, row.not_after, ca.clock.now())
        revoked = effective == CertificateStatus.REVOKED
        return JSONResponse(_public(serial, effective, row.reason if revoked else None,
                                    row.changed_at if revoked else None))

    return Starlette(routes=[
        Route("/crl/{name}", crl),
        Route("/ca/{name}", issuing),
        Route("/status/{serial}", status_of),
    ])


def _public(serial: str, status: str, reason: str | None, revoked_at: datetime | None,
            **extra: Any) -> dict[str, Any]:
    """What the public may know of a serial: what OCSP and the CRL tell anyone (status,
    revocation time and reason), never whose it is or who revoked it (the portal's ops API
    has that, behind an ops token)."""
    return {"serial": serial, "status": status, "reason": reason,
            "revoked_at": revoked_at.isoformat() if revoked_at else None, **extra}


# -- the two roles --------------------------------------------------------------------
