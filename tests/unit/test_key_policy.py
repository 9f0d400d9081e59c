"""R3 key policy: proof of possession, allowed keys, weak keys (via badkeys)."""

from __future__ import annotations

import secrets

import gmpy2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from adapters.client import softtoken
from ca_core.credentials import hash_password, verify_password
from ca_core.keypolicy import CsrRejected, check_key_policy, checked_csr
from ca_core.request import RequestRefused, check_revocation_passwords


def csr_for(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return softtoken.make_csr(key, "anything")


def code_of(pem: str) -> str:
    with pytest.raises(CsrRejected) as rejected:
        checked_csr(pem)
    return rejected.value.code


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa2048", "rsa3072"])
def test_r3_allowed_keys_pass(kind: str) -> None:
    checked_csr(csr_for(softtoken.new_key(kind)))


def test_r3_other_curves_are_refused() -> None:
    assert code_of(csr_for(ec.generate_private_key(ec.SECP521R1()))) == "key-type-not-allowed"
    assert code_of(csr_for(ec.generate_private_key(ec.SECP256K1()))) == "key-type-not-allowed"


def test_r3_rsa_size_and_exponent_rules() -> None:
    assert code_of(csr_for(rsa.generate_private_key(65537, 1024))) == "key-size-not-allowed"
    assert code_of(csr_for(rsa.generate_private_key(65537, 2052))) == "key-size-not-allowed"
    assert code_of(csr_for(rsa.generate_private_key(3, 2048))) == "key-exponent-not-allowed"


def test_r3_ed25519_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    pem = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
           .sign(key, None).public_bytes(serialization.Encoding.PEM).decode())
    assert code_of(pem) == "key-type-not-allowed"


def test_r3_bad_signature_is_refused() -> None:
    good = x509.load_pem_x509_csr(csr_for(softtoken.new_key()).encode())
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # flip a bit inside the signature
    pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    assert code_of(pem) == "csr-bad-signature"


@pytest.mark.parametrize("pem", ["", "garbage", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                 "-----END CERTIFICATE REQUEST-----\n", "x" * 20000])
def test_r3_malformed_csr_is_refused_with_a_reason(pem: str) -> None:
    assert code_of(pem) == "csr-malformed"


def _fermat_key() -> rsa.RSAPrivateKey:
    """Two 1024-bit primes very close together: factorable by Fermat's method."""
    p = int(gmpy2.next_prime(secrets.randbits(1024) | (3 << 1022)))
    q = int(gmpy2.next_prime(p + secrets.randbits(200)))
    n, e = p * q, 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, n))
    return numbers.private_key()


def test_r3_fermat_factorable_key_is_refused() -> None:
    key = _fermat_key()
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(key, hashes.SHA256())
    assert code_of(csr.public_bytes(serialization.Encoding.PEM).decode()) == "key-weak"


def test_r3_small_factor_key_is_refused() -> None:
    n = 0
    while n.bit_length() != 2048:
        n = 5 * int(gmpy2.next_prime(secrets.randbits(2046) | (1 << 2045)))
    key = rsa.RSAPublicNumbers(65537, n).public_key()
    with pytest.raises(CsrRejected) as rejected:
        check_key_policy(key)
    assert rejected.value.code == "key-weak"
    assert "smallfactors" in str(rejected.value)


def test_r3_revocation_password_twice_must_match() -> None:
    with pytest.raises(RequestRefused) as refused:
        check_revocation_passwords("first password", "second password")
    assert refused.value.code == "revocation-password-mismatch"
    check_revocation_passwords("same password", "same password")


def test_r3_revocation_password_is_kept_as_salted_scrypt_hash() -> None:
    stored = hash_password("same password")
    assert stored.startswith("scrypt$") and "same password" not in stored
    assert stored != hash_password("same password")  # salted
    assert verify_password("same password", stored)
    assert not verify_password("other password", stored)


def _roca_prime(modulus: int, bits: int = 1024) -> int:
    """A prime of the structure ROCA exploits: k·M + (65537^a mod M)."""
    while True:
        a = secrets.randbelow(2**40)
        spare = bits - modulus.bit_length()
        k = secrets.randbits(spare) | (1 << (spare - 1))
        p = k * modulus + pow(65537, a, modulus)
        if p.bit_length() == bits and gmpy2.is_prime(p):
            return p


def test_r3_roca_vulnerable_key_is_refused() -> None:
    primorial, count, candidate = 1, 0, 2
    while count < 126:
        if gmpy2.is_prime(candidate):
            primorial *= candidate
            count += 1
        candidate += 1
    n = 0
    while n.bit_length() != 2048:
        n = _roca_prime(primorial) * _roca_prime(primorial)
    with pytest.raises(CsrRejected) as rejected:
        check_key_policy(rsa.RSAPublicNumbers(65537, n).public_key())
    assert rejected.value.code == "key-weak" and "roca" in str(rejected.value)
