"""The portal session's claims: the one typed model every session token carries.

A token is the claims signed with the portal secret (``sessions.Sessions``). The claims are
serialised under one-letter keys (the aliases below), so tokens stay short in a cookie and
the tokens of a running portal stay valid across an upgrade."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ca_core.errors import NotAuthenticated
from ca_core.portal import CertificateSession, EnrollmentSession

Kind = Literal["enrollment", "certificate", "ops"]


class SessionClaims(BaseModel):
    """Who a session is: its kind, user, module and recorded id, and what it was opened with
    (the OTP of an enrollment session, the certificate of a certificate session, the ops
    token of an ops page session)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    kind: Kind = Field(alias="k")
    user: str = Field(alias="u", min_length=1)
    module: str = Field(default="", alias="m")
    session_id: str = Field(default="", alias="i")
    otp_id: UUID | None = Field(default=None, alias="o")
    serial: str | None = Field(default=None, alias="s")
    request_id: UUID | None = Field(default=None, alias="r")
    #: the first hex digits of the ops token's SHA-256 an ops page session was opened with
    token_id: str | None = Field(default=None, alias="t")

    @classmethod
    def for_enrollment(cls, found: EnrollmentSession) -> SessionClaims:
        return cls(kind="enrollment", user=found.user_id, module=found.module,
                   otp_id=found.otp_id)

    @classmethod
    def for_certificate(cls, found: CertificateSession) -> SessionClaims:
        return cls(kind="certificate", user=found.user_id, module=found.module,
                   serial=found.serial, request_id=found.request_id)

    @classmethod
    def for_ops(cls, name: str, token_id: str) -> SessionClaims:
        return cls(kind="ops", user=f"ops:{name}", token_id=token_id)

    @classmethod
    def of(cls, data: Any) -> SessionClaims:
        """The claims a verified token carried; anything else is not a session."""
        try:
            claims = cls.model_validate(data)
        except ValidationError:
            raise NotAuthenticated("the session token is not valid",
                                   code="session-required") from None
        if not claims.session_id or (claims.kind == "enrollment" and claims.otp_id is None) or (
                claims.kind == "certificate" and (claims.serial is None
                                                  or claims.request_id is None)):
            raise NotAuthenticated("the session token is not valid", code="session-required")
        return claims

    def signed_form(self) -> dict[str, Any]:
        """What is signed into the token."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @property
    def is_partner(self) -> bool:
        return self.kind in ("enrollment", "certificate")

    def enrollment(self) -> EnrollmentSession:
        assert self.kind == "enrollment" and self.otp_id is not None
        return EnrollmentSession(self.otp_id, self.user, self.module)

    def certificate(self) -> CertificateSession:
        assert self.kind == "certificate" and self.serial and self.request_id
        return CertificateSession(self.user, self.module, self.serial, self.request_id)
