"""A software stand-in for the user's token: key pair, CSR, challenge signature.

The demo and the tests use it; the PKCS#11 token tool replaces it for real tokens.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

UserKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_key(kind: str = "p256") -> UserKey:
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa")))


def make_csr(key: UserKey, common_name: str) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def sign_challenge(key: UserKey, challenge: str) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(challenge.encode(), ec.ECDSA(hashes.SHA256()))
    return key.sign(challenge.encode(), padding.PKCS1v15(), hashes.SHA256())


def key_pem(key: UserKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def load_key(pem: bytes) -> UserKey:
    key = serialization.load_pem_private_key(pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError("the key must be an EC or RSA private key")
    return key
