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
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from ca_core.x509profile import SigningKey, _aki, _hash_for

MAX_CRL_VALIDITY = timedelta(days=7)

#: RFC 5280 §5.3.1 CRLReason codes
REASON_CODES = {"unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3,
                "superseded": 4, "cessationOfOperation": 5, "certificateHold": 6,
                "removeFromCRL": 8, "privilegeWithdrawn": 9, "aACompromise": 10}


class RevokedEntry(NamedTuple):
    serial: str  # hex
    revoked_at: datetime
    reason: str  # RFC 5280 name, e.g. keyCompromise


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _reason_extensions(code: int) -> bytes:
    """Extensions ::= SEQUENCE { Extension { id-ce-cRLReasons, OCTET STRING { ENUMERATED } } }"""
    oid = bytes.fromhex("0603551d15")
    return _tlv(0x30, _tlv(0x30, oid + _tlv(0x04, _tlv(0x0A, bytes((code,))))))


# RFC 5280 §5.3.1: reasonCode "unspecified" SHOULD be absent rather than present
_EXTENSIONS = {name: (_reason_extensions(code) if code else b"")
               for name, code in REASON_CODES.items()}


def _time(moment: datetime) -> bytes:
    """UTCTime through 2049, GeneralizedTime after (RFC 5280 §5.1.2.4)."""
    if 1950 <= moment.year < 2050:
        return _tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())


def _entry(entry: RevokedEntry) -> bytes:
    serial = int(entry.serial, 16)
    content = (_tlv(0x02, serial.to_bytes((serial.bit_length() + 8) // 8, "big"))
               + _time(entry.revoked_at) + _EXTENSIONS[entry.reason])
    return _tlv(0x30, content)


def _elements(der: bytes) -> list[bytes]:
    """The TLVs inside one DER SEQUENCE (definite lengths, as DER requires)."""
    def header(at: int) -> tuple[int, int]:
        first = der[at + 1]
        if first < 0x80:
            return at + 2, first
        size = first & 0x7F
        return at + 2 + size, int.from_bytes(der[at + 2:at + 2 + size], "big")

    start, length = header(0)
    found, at = [], start
    while at < start + length:
        content, size = header(at)
        found.append(der[at:content + size])
        at = content + size
    return found


def _sign(key: SigningKey, data: bytes | bytearray) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(_hash_for(key)))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(bytes(data), padding.PKCS1v15(), _hash_for(key))
    raise TypeError(f"unsupported CRL signing key {type(key).__name__}")


def build_crl(issuer_key: SigningKey, issuer: x509.Certificate, entries: Iterable[RevokedEntry],
              number: int, this_update: datetime, validity: timedelta = timedelta(days=1),
              distribution_point: str | None = None) -> bytes:
    """The signed CRL, DER: the full CRL, or with ``distribution_point`` one shard of a
    partitioned CRL (critical issuingDistributionPoint naming that URL, user certificates
    only, RFC 5280 §5.2.5). ``this_update`` is truncated to the second."""
    this_update = this_update.replace(microsecond=0)
    extensions = [
        x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
        x509.Extension(x509.AuthorityKeyIdentifier.oid, False, _aki(issuer)),
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
    ).sign(issuer_key, _hash_for(issuer_key))
    fields = _elements(template.tbs_certlist_bytes)
    revoked = bytearray()  # one growing buffer: a million entries are about 46 MB of DER
    for entry in entries:
        revoked += _entry(entry)
    at = next(i for i, f in enumerate(fields) if f[0] == 0xA0)  # crlExtensions [0]
    before, after = b"".join(fields[:at]), b"".join(fields[at:])
    revoked_header = b"\x30" + _length(len(revoked)) if revoked else b""
    tbs = bytearray(b"\x30" + _length(len(before) + len(revoked_header) + len(revoked)
                                       + len(after)))
    tbs += before
    tbs += revoked_header
    tbs += revoked
    del revoked
    tbs += after
    _, signature_algorithm, _ = _elements(template.public_bytes(Encoding.DER))
    signature = _tlv(0x03, b"\x00" + _sign(issuer_key, tbs))
    der = bytearray(b"\x30" + _length(len(tbs) + len(signature_algorithm) + len(signature)))
    der += tbs
    del tbs
    der += signature_algorithm
    der += signature
    return bytes(der)
