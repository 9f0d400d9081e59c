"""Pure CRL construction (RFC 5280 §5): full CRL of the issuing CA, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from ca_core.x509profile import SigningKey, _aki, _hash_for

MAX_CRL_VALIDITY = timedelta(days=7)


@dataclass(frozen=True)
class RevokedEntry:
    serial: str  # hex
    revoked_at: datetime
    reason: str  # RFC 5280 name, e.g. keyCompromise


def build_crl(issuer_key: SigningKey, issuer: x509.Certificate, entries: Iterable[RevokedEntry],
              number: int, this_update: datetime,
              validity: timedelta = timedelta(days=1)) -> x509.CertificateRevocationList:
    """Entries go to the builder's constructor: add_revoked_certificate() copies the list
    on every call, which is quadratic for large CRLs."""
    revoked = [
        x509.RevokedCertificateBuilder()
        .serial_number(int(e.serial, 16))
        .revocation_date(e.revoked_at)
        .add_extension(x509.CRLReason(x509.ReasonFlags(e.reason)), critical=False)
        .build()
        for e in entries
    ]
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer.subject, last_update=this_update,
        next_update=this_update + min(validity, MAX_CRL_VALIDITY),
        extensions=[
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
            x509.Extension(x509.AuthorityKeyIdentifier.oid, False, _aki(issuer)),
        ],
        revoked_certificates=revoked,
    )
    return builder.sign(issuer_key, _hash_for(issuer_key))
