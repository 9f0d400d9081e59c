"""The API for partners: the manual's chapters 3–8 (logins, request, pickup, renewal,
revocation) over HTTP."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.

import base64
import binascii
import urllib.parse
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from adapters.portal.api.guards import Guards
from adapters.portal.api.schemas import (
    Accepted,
    Certificate,
    CertificateLogin,
    CertificateRequestIn,
    Challenge,
    OtpLogin,
    PickupIn,
    RequestAccepted,
    RequestStatus,
    RevocationIn,
    SessionOut,
)
from adapters.portal.http.claims import SessionClaims
from adapters.portal.refusal import floored_login
from ca_core.certificate import parse_serial
from ca_core.certificate_login import ChallengeRefused
from ca_core.errors import NotAuthenticated
from ca_core.portal import CertificateSession, EnrollmentSession, Portal


def partner_routes(portal: Portal, guards: Guards, otp_refusal_seconds: float) -> APIRouter:
    """The manual's chapters 3–8 for partners: logins, request, pickup, renewal, revocation."""
    api = APIRouter()
    sessions = guards.sessions
    lifetime = sessions.lifetime
    session, enrollment, certificate = guards.partner, guards.enrollment, guards.certificate
    check_address = guards.address

    def certificate_session(found: CertificateSession) -> SessionOut:
        """A certificate session opened (R5), however the certificate was proven."""
        token = sessions.open(SessionClaims.for_certificate(found))
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
        token = sessions.open(SessionClaims.for_enrollment(found))
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

    @api.get("/v1/requests/{request_id}", response_model=RequestStatus, tags=["request"])
    def request_status(request_id: UUID,
                       data: Annotated[SessionClaims, Depends(session)]) -> RequestStatus:
        """Where the request is (submitted, issued, rejected, picked up); poll while waiting."""
        request = portal.owned_request(request_id, data.user)
        return RequestStatus(request_id=request_id, state=request.state, serial=request.serial,
                             certificate_status=request.certificate_status,
                             rejection=getattr(request, "rejection", None))

    @api.get("/v1/requests/{request_id}/certificate", response_model=Certificate,
             tags=["request"])
    def pickup(request_id: UUID,
               data: Annotated[SessionClaims, Depends(session)]) -> Certificate:
        """R4: pickup while logged in (either session of the same user)."""
        picked = portal.pickup(request_id, data.user)
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
        return Challenge(challenge=portal.certificate_login.new_challenge(
            parse_serial(serial) if serial else ""))

    @api.delete("/v1/session", status_code=204, tags=["login"], response_class=Response)
    def logout(data: Annotated[SessionClaims, Depends(session)]) -> Response:
        """End this session (either kind); the token is refused from now on."""
        portal.sessions.end(data.session_id, f"user:{data.user}")
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
            portal.certificate_login.with_signature(body.certificate_pem, body.challenge, signature))

    @api.post("/v1/sessions/tls-client", response_model=SessionOut, status_code=201,
              tags=["login"], dependencies=[Depends(check_address)])
    def login_with_tls_client(request: Request) -> SessionOut:
        """R5, chapter 6 behind the TLS proxy: the certificate the proxy verified in the TLS
        handshake (``X-Client-Verify``, ``X-Client-Certificate``), believed only from a
        trusted proxy (docs/operations.md)."""
        if not sessions.trust.from_trusted_proxy(request):
            raise NotAuthenticated("a TLS client certificate is taken only from the trusted "
                                   "TLS proxy", code="tls-client-untrusted")
        pem = urllib.parse.unquote(request.headers.get("x-client-certificate", ""))
        if request.headers.get("x-client-verify") != "SUCCESS" or not pem:
            raise NotAuthenticated("the TLS proxy verified no client certificate",
                                   code="tls-client-missing")
        found = portal.certificate_login.verified_by_proxy(pem)
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
