"""File key store: CA private keys as PKCS#8 PEM encrypted with a passphrase (encrypted at rest)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ca_core.errors import DomainError
from ca_core.x509profile import SigningKey


class KeyStoreError(DomainError):
    code = "key-store"


class FileKeyStore:
    """Keys in ``<directory>/<name>.key.pem``, mode 0600, encrypted with the passphrase."""

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        if len(passphrase) < 12:
            raise KeyStoreError("the key passphrase must have at least 12 characters",
                                code="key-passphrase-too-short")
        self.directory = directory
        self._passphrase = passphrase

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.key.pem"

    def save(self, name: str, key: SigningKey) -> str:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        )
        path = self._path(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"file:{name}:{hashlib.sha256(spki).hexdigest()[:16]}"

    def load(self, name: str) -> SigningKey:
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyStoreError(f"no key {name!r} in {self.directory}",
                                code="key-missing") from None
        try:
            key = serialization.load_pem_private_key(data, self._passphrase)
        except (ValueError, TypeError):
            raise KeyStoreError(f"cannot decrypt key {name!r}: wrong passphrase?",
                                code="key-passphrase-wrong") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyStoreError(f"key {name!r} is not an EC or RSA key", code="key-type")
        return key

    def exists(self, name: str) -> bool:
        return self._path(name).exists()
