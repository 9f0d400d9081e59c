"""The API's request and response bodies (pydantic): what the OpenAPI description shows."""

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from ca_core.certificate import PARTNER_REVOCATION_REASONS, RevocationReason

#: the reasons a partner may give (R9), from the domain's one list
PartnerReason = Literal[PARTNER_REVOCATION_REASONS]  # type: ignore[valid-type]


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
    reason: PartnerReason = "unspecified"  # type: ignore[valid-type]


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
