"""Key policy for certificate requests (R3): proof of possession and acceptable keys.

Weak-key detection (ROCA, Fermat, small factors, invalid RSA values) is done by
the ``badkeys`` package rather than by code of our own.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from badkeys.checks import checkrsa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ca_core.errors import DomainError

MAX_CSR_BYTES = 16 * 1024
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 4096
BADKEYS_CHECKS = ("fermat", "roca", "smallfactors", "rsainvalid", "smalld", "rsapoly")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class CsrRejected(DomainError):
    """R3: the CSR or its key is not acceptable; the code names the reason."""

    code = "csr-rejected"


@lru_cache(maxsize=4096)  # the CA reads a CSR while prefetching a batch and again when signing
def _parsed_csr(pem: str) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(pem.encode())


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    """Parse a PEM PKCS#10 request, refusing oversize or malformed input."""
    if len(pem) > MAX_CSR_BYTES:
        raise CsrRejected(f"CSR is larger than {MAX_CSR_BYTES} bytes", code="csr-malformed")
    try:
        return _parsed_csr(pem)
    except (ValueError, UnicodeEncodeError) as exc:
        raise CsrRejected(f"CSR is not a valid PEM PKCS#10 request ({exc})",
                          code="csr-malformed") from None


def check_proof_of_possession(csr: x509.CertificateSigningRequest) -> None:
    """R3: the CSR's self-signature must verify."""
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # noqa: BLE001 - unsupported algorithms raise various types
        raise CsrRejected(f"CSR signature cannot be checked ({exc})",
                          code="csr-bad-signature") from None
    if not valid:
        raise CsrRejected("CSR signature does not verify (no proof of possession)",
                          code="csr-bad-signature")


def check_key_policy(key: object) -> PublicKey:
    """R3: EC P-256/P-384 or RSA 2048–4096 (multiple of 8, e = 65537), not a known-weak key."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ALLOWED_CURVES):
            raise CsrRejected(f"EC curve {key.curve.name} is not allowed (use P-256 or P-384)",
                              code="key-type-not-allowed")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        bits = key.key_size
        if bits < RSA_MIN_BITS or bits > RSA_MAX_BITS or bits % 8:
            raise CsrRejected(
                f"RSA key size {bits} is not allowed (2048–4096 bits, a multiple of 8)",
                code="key-size-not-allowed",
            )
        if numbers.e != 65537:
            raise CsrRejected(f"RSA public exponent {numbers.e} is not allowed (must be 65537)",
                              code="key-exponent-not-allowed")
        findings = checkrsa(numbers.n, e=numbers.e, checks=BADKEYS_CHECKS)
        if findings:
            names = ", ".join(sorted(findings))
            raise CsrRejected(f"RSA key is known to be weak ({names})", code="key-weak")
        return key
    raise CsrRejected(f"key type {type(key).__name__} is not allowed (use EC or RSA)",
                      code="key-type-not-allowed")


def checked_csr(pem: str) -> tuple[x509.CertificateSigningRequest, PublicKey]:
    """Load a CSR and apply every stateless R3 check; returns the CSR and its key."""
    csr = load_csr(pem)
    try:
        key = csr.public_key()
    except Exception as exc:  # noqa: BLE001 - unsupported key types raise various types
        raise CsrRejected(f"CSR public key is not supported ({exc})",
                          code="key-type-not-allowed") from None
    checked = check_key_policy(key)
    check_proof_of_possession(csr)
    return csr, checked


def spki_fingerprint(key: CertificatePublicKeyTypes) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: the key's identity in the key registry."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@lru_cache(maxsize=4096)  # the CA asks while prefetching a batch and again when signing
def csr_fingerprint(pem: str) -> str | None:
    """The SPKI fingerprint of a CSR's key without any checks, or None if it cannot be read."""
    if len(pem) > MAX_CSR_BYTES:
        return None
    try:
        return spki_fingerprint(_parsed_csr(pem).public_key())
    except Exception:  # noqa: BLE001 - only a hint for prefetching; checked_csr judges the CSR
        return None
