"""Configurable parts of the rules, as plain values the applications are given."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict

DEFAULT_MODULES = ("EPAK", "REV", "PIS", "SBOX")


class PortalPolicy(BaseModel):
    """Registration-authority settings (R1, R2, R7)."""

    model_config = ConfigDict(frozen=True)

    modules: tuple[str, ...] = DEFAULT_MODULES
    otp_validity: timedelta = timedelta(days=21)
    otp_max_attempts: int = 5
    session_lifetime: timedelta = timedelta(minutes=30)
    challenge_lifetime: timedelta = timedelta(minutes=5)
    renewal_supersede_reason: str = "superseded"


class IssuancePolicy(BaseModel):
    """The end-entity certificate profile's configurable parts (R4)."""

    model_config = ConfigDict(frozen=True)

    organization: str = "Partner Portal"
    country: str = "CZ"
    crl_url: str = "http://127.0.0.1:8081/crl/issuing.crl"
    ocsp_url: str = "http://127.0.0.1:8080/ocsp"
    ca_issuers_url: str = "http://127.0.0.1:8081/ca/issuing.cer"
    policy_oid: str = "1.3.6.1.4.1.55555.1.1"
