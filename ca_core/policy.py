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
    #: R9: wrong revocation passwords before it is locked (ops lift it)
    revocation_max_attempts: int = 5
    #: R7: renewal requests per user in 24 hours (besides: one pending per certificate)
    renewals_per_day: int = 3
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
    #: Sharded CRLs (as Let's Encrypt does them): 0 = off. With N > 0 each certificate's CRL
    #: distribution point is ``crl_shard_url`` for shard serial mod N, and a small CRL is
    #: published per shard beside the full one. N must not change while such certificates live.
    crl_shards: int = 0
    crl_shard_url: str = "http://127.0.0.1:8081/crl/shard-{shard}.crl"

    def crl_shard(self, serial: int) -> int | None:
        return serial % self.crl_shards if self.crl_shards else None

    def crl_url_for(self, serial: int) -> str:
        """The CRL distribution point written into the certificate with this serial."""
        shard = self.crl_shard(serial)
        return self.crl_url if shard is None else self.crl_shard_url.format(shard=shard)
