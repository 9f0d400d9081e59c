"""A client of the portal's HTTP API (httpx): what the token tool uses to walk the manual's flows."""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
from cryptography import x509

from ca_core.errors import DomainError


class PortalRefused(DomainError):
    """The portal answered with an RFC 9457 problem; ``code`` is its stable type."""

    def __init__(self, code: str, detail: str, status: int) -> None:
        super().__init__(detail, code=code)
        self.status = status


class PortalClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, session: str | None = None,
              **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {session}"} if session else {}
        try:
            reply = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise PortalRefused("portal-unreachable",
                                f"cannot reach the portal at {self.http.base_url}: {exc}",
                                0) from None
        if reply.status_code >= 400:
            try:
                problem = reply.json()
                raise PortalRefused(str(problem["code"]), str(problem["detail"]),
                                    reply.status_code)
            except (ValueError, KeyError, TypeError):
                raise PortalRefused("portal-error", f"HTTP {reply.status_code} from {path}",
                                    reply.status_code) from None
        return reply.json() if "json" in reply.headers.get("content-type", "") else reply.text

    # the manual's flows ---------------------------------------------------------------
    def login_with_otp(self, user_id: str, otp: str) -> str:
        return str(self._call("POST", "/v1/sessions/otp",
                              json={"user_id": user_id, "otp": otp})["token"])

    def submit(self, session: str, csr_pem: str, password: str, again: str) -> str:
        return str(self._call("POST", "/v1/requests", session, json={
            "csr_pem": csr_pem, "revocation_password": password,
            "revocation_password_again": again})["request_id"])

    def status(self, session: str, request_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/v1/requests/{request_id}", session)
        return found

    def wait(self, session: str, request_id: str, timeout: float = 300.0,
             tick: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Until the CA has answered (ready or rejected), as the manual's waiting screen does."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.status(session, request_id)
            if tick is not None:
                tick(found["state"])
            if found["state"] != "submitted":
                return found
            if time.monotonic() > deadline:
                raise PortalRefused("issuance-timeout",
                                    f"no answer from the CA within {timeout:.0f} s", 0)
            time.sleep(0.5)

    def pickup(self, session: str, request_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/v1/requests/{request_id}/certificate",
                                           session)
        return found

    def pickup_link(self, link: str) -> dict[str, Any]:
        """The emailed single-use link (``…/pickup/<request id>?token=…``; the older
        ``/v1/pickup/…`` form too): its request id and token are POSTed to the API."""
        parsed = urllib.parse.urlsplit(link)
        request_id = parsed.path.rstrip("/").rsplit("/", 1)[-1]
        token = urllib.parse.parse_qs(parsed.query).get("token", [""])[0]
        found: dict[str, Any] = self._call("POST", f"/v1/pickup/{request_id}",
                                           json={"token": token})
        return found

    def login_with_certificate(self, certificate_pem: str,
                               sign: Callable[[bytes], bytes]) -> dict[str, Any]:
        # a challenge bound to this certificate, good for this one login
        serial = x509.load_pem_x509_certificate(certificate_pem.encode()).serial_number
        challenge = self._call("GET", f"/v1/challenge?serial={serial:X}")["challenge"]
        found: dict[str, Any] = self._call("POST", "/v1/sessions/certificate", json={
            "certificate_pem": certificate_pem, "challenge": challenge,
            "signature_b64": base64.b64encode(sign(challenge.encode())).decode()})
        return found

    def renew(self, session: str, csr_pem: str, password: str, again: str) -> str:
        return str(self._call("POST", "/v1/renewals", session, json={
            "csr_pem": csr_pem, "revocation_password": password,
            "revocation_password_again": again})["request_id"])

    def revoke(self, session: str, password: str, reason: str) -> None:
        self._call("POST", "/v1/revocations", session,
                   json={"revocation_password": password, "reason": reason})

    def chain_pem(self) -> str:
        return str(self._call("GET", "/v1/chain.pem"))
