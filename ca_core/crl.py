"""Pure CRL construction (RFC 5280 §5): full CRL of the issuing CA, no I/O.

A CRL can hold a million entries. cryptography's builder needs about 7 s for
that (and ``add_revoked_certificate()`` copies its list on every call:
quadratic); here cryptography builds and signs the CRL *without* entries — the
template supplies version, algorithms, issuer, times and extensions — and the
revokedCertificates list is DER-encoded directly (three fields per entry) and
spliced into the template's TBSCertList, which is then signed again with the
issuer key. openssl (`verify -crl_check`, `crl -text`), pkilint and
cryptography's own parser judge the result in the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca_core.der import elements, integer, length, tlv, x509_time
from ca_core.signatures import SigningKey, hash_for, sign
from ca_core.x509profile import authority_key_id

MAX_CRL_VALIDITY = timedelta(days=7)

#: RFC 5280 §5.3.1 CRLReason codes
REASON_CODES = {"unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3,
                "superseded": 4, "cessationOfOperation": 5, "certificateHold": 6,
                "removeFromCRL": 8, "privilegeWithdrawn": 9, "aACompromise": 10}


class RevokedEntry(NamedTuple):
    serial: str  # hex
    revoked_at: datetime
    reason: str  # RFC 5280 name, e.g. keyCompromise


def _reason_extensions(code: int) -> bytes:
    """Extensions ::= SEQUENCE { Extension { id-ce-cRLReasons, OCTET STRING { ENUMERATED } } }"""
    oid = bytes.fromhex("0603551d15")
    return tlv(0x30, tlv(0x30, oid + tlv(0x04, tlv(0x0A, bytes((code,))))))


# RFC 5280 §5.3.1: reasonCode "unspecified" SHOULD be absent rather than present
_EXTENSIONS = {name: (_reason_extensions(code) if code else b"")
               for name, code in REASON_CODES.items()}


def _entry(entry: RevokedEntry) -> bytes:
    serial = int(entry.serial, 16)
    content = integer(serial) + x509_time(entry.revoked_at) + _EXTENSIONS[entry.reason]
    return tlv(0x30, content)


def build_crl(issuer_key: SigningKey, issuer: x509.Certificate, entries: Iterable[RevokedEntry],
              number: int, this_update: datetime, validity: timedelta = timedelta(days=1),
              distribution_point: str | None = None) -> bytes:
    """The signed CRL, DER: the full CRL, or with ``distribution_point`` one shard of a
    partitioned CRL (critical issuingDistributionPoint naming that URL, user certificates
    only, RFC 5280 §5.2.5). ``this_update`` is truncated to the second."""
    this_update = this_update.replace(microsecond=0)
    extensions = [
        x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
        x509.Extension(x509.AuthorityKeyIdentifier.oid, False, authority_key_id(issuer)),
    ]
    if distribution_point is not None:
        extensions.append(x509.Extension(x509.IssuingDistributionPoint.oid, True,
                                         x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier(distribution_point)], relative_name=None,
            only_contains_user_certs=True, only_contains_ca_certs=False,
            only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False)))
    template = x509.CertificateRevocationListBuilder(
        issuer_name=issuer.subject, last_update=this_update,
        next_update=this_update + min(validity, MAX_CRL_VALIDITY), extensions=extensions,
    ).sign(issuer_key, hash_for(issuer_key))
    fields = elements(template.tbs_certlist_bytes)
    revoked = bytearray()  # one growing buffer: a million entries are about 46 MB of DER
    for entry in entries:
        revoked += _entry(entry)
    at = next(i for i, f in enumerate(fields) if f[0] == 0xA0)  # crlExtensions [0]
    before, after = b"".join(fields[:at]), b"".join(fields[at:])
    revoked_header = b"\x30" + length(len(revoked)) if revoked else b""
    tbs = bytearray(b"\x30" + length(len(before) + len(revoked_header) + len(revoked)
                                       + len(after)))
    tbs += before
    tbs += revoked_header
    tbs += revoked
    del revoked
    tbs += after
    _, signature_algorithm, _ = elements(template.public_bytes(Encoding.DER))
    signature = tlv(0x03, b"\x00" + sign(issuer_key, tbs))
    der = bytearray(b"\x30" + length(len(tbs) + len(signature_algorithm) + len(signature)))
    der += tbs
    del tbs
    der += signature_algorithm
    der += signature
    return bytes(der)
