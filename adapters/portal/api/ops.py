"""The API for module administrators and operators (ops API tokens): registration, OTPs,
certificate status, revocation (R10), unlocking, sessions."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from adapters.portal.api.guards import Guards
from adapters.portal.api.schemas import (
    Accepted,
    CertificateStatusOut,
    OpsRevocationIn,
    OtpIn,
    OtpOut,
    PartnerIn,
    PartnerOut,
)
from adapters.portal.ops_auth import OpsIdentity
from ca_core.certificate import parse_serial
from ca_core.portal import OpenSession, Portal


def ops_routes(portal: Portal, guards: Guards) -> APIRouter:
    """Module administrators and operators, with ops API tokens (none given: every call 401)."""
    api = APIRouter()
    ops = guards.ops

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
        return portal.sessions.open_of(user_id)

    @api.delete("/v1/ops/sessions/{session_id}", response_model=Accepted, tags=["ops"])
    def end_one_session(session_id: UUID,
                        who: Annotated[OpsIdentity, Depends(ops)]) -> Accepted:
        """End one session (an operator)."""
        who.check_operator()
        ended = portal.sessions.end(str(session_id), f"operator:{who.name}")
        return Accepted(status="session ended" if ended else "no such open session")

    @api.delete("/v1/ops/partners/{user_id}/sessions", response_model=Accepted, tags=["ops"])
    def end_sessions(user_id: str, who: Annotated[OpsIdentity, Depends(ops)]) -> Accepted:
        """End every session of a user opened until now (an operator)."""
        who.check_operator()
        portal.sessions.end_all(user_id, f"operator:{who.name}")
        return Accepted(status="sessions ended")

    return api
