"""Signing and checking signatures with the key types this CA takes (EC and RSA): the one
place that says which padding and which hash go with which key."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

#: the private keys this CA signs with
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def hash_for(key: SigningKey) -> hashes.SHA256 | hashes.SHA384:
    """SHA-384 for EC keys above 256 bits, SHA-256 otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def sign(key: SigningKey, data: bytes | bytearray) -> bytes:
    """ECDSA, or RSA PKCS#1 v1.5, with ``hash_for(key)``."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(bytes(data), ec.ECDSA(hash_for(key)))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(bytes(data), padding.PKCS1v15(), hash_for(key))
    raise TypeError(f"unsupported signing key {type(key).__name__}")


def verifies(public: CertificatePublicKeyTypes, signature: bytes, data: bytes,
             algorithm: hashes.HashAlgorithm | None = None) -> bool | None:
    """Whether ``signature`` over ``data`` verifies with ``public`` (ECDSA, or RSA PKCS#1
    v1.5; hash ``algorithm``, default SHA-256); None for a key type this CA does not take."""
    algorithm = algorithm or hashes.SHA256()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), algorithm)
        else:
            return None
    except InvalidSignature:
        return False
    return True
