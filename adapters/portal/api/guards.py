"""The typed FastAPI dependencies that admit an API caller: a partner's session (either
kind), an enrollment session, a certificate session, an ops identity (bearer ops token), and
the per-address limit on the calls that guess."""

# No ``from __future__ import annotations``: FastAPI reads the Header() annotations.

from typing import Annotated

from fastapi import Header, Request

from adapters.portal.http.claims import SessionClaims
from adapters.portal.http.limits import AddressLimit
from adapters.portal.http.sessions import Sessions
from adapters.portal.ops_auth import OpsIdentity, OpsTokens
from ca_core.errors import NotAuthenticated
from ca_core.portal import CertificateSession, EnrollmentSession


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise NotAuthenticated("log in first (Authorization: Bearer <token>)",
                               code="session-required")
    return authorization[7:]


class Guards:
    """Each method is a dependency: ``Depends(guards.enrollment)`` and so on."""

    def __init__(self, sessions: Sessions, limit: AddressLimit,
                 ops_tokens: OpsTokens | None) -> None:
        self.sessions, self.limit, self.ops_tokens = sessions, limit, ops_tokens

    def partner(self, authorization: Annotated[str | None, Header()] = None) -> SessionClaims:
        """A partner's session (enrollment or certificate) from its bearer token."""
        return self.sessions.partner(_bearer(authorization))

    def enrollment(self, authorization: Annotated[str | None, Header()] = None
                   ) -> EnrollmentSession:
        return self.sessions.enrollment(_bearer(authorization)).enrollment()

    def certificate(self, authorization: Annotated[str | None, Header()] = None
                    ) -> CertificateSession:
        return self.sessions.certificate(_bearer(authorization)).certificate()

    def ops(self, authorization: Annotated[str | None, Header()] = None) -> OpsIdentity:
        found = None
        if self.ops_tokens is not None and authorization and authorization.startswith(
                "Bearer "):
            found = self.ops_tokens.authenticate(authorization[7:])
        if found is None:
            raise NotAuthenticated("an ops API token is required", code="ops-token-required")
        return found

    def address(self, request: Request) -> None:
        self.limit.check(request)
