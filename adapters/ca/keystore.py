"""File key store: CA private keys as PKCS#8 PEM encrypted with a passphrase (encrypted at rest).

The files are standard EncryptedPrivateKeyInfo (RFC 8018 PBES2): PBKDF2-HMAC-SHA256 at
``KDF_ITERATIONS`` (OWASP's 2023 figure) and AES-256-CBC, so ``openssl pkey`` reads them
too. cryptography writes PKCS#8 only with its own 2,048-iteration PBKDF2, so the envelope
is built here with asn1crypto (``encrypt_pkcs8``); reading is cryptography's.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from asn1crypto import algos as asn1_algos
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ca_core.errors import NotReady
from ca_core.ports import KeyStore
from ca_core.signatures import SigningKey

KDF_ITERATIONS = 600_000  # PBKDF2-HMAC-SHA256, OWASP Password Storage Cheat Sheet (2023)


class KeyStoreError(NotReady):
    """A key store that cannot answer (a missing key, a wrong passphrase): infrastructure,
    not a rule."""

    code = "key-store"


def encrypt_pkcs8(key: SigningKey, passphrase: bytes, iterations: int = KDF_ITERATIONS) -> bytes:
    """``key`` as PEM EncryptedPrivateKeyInfo: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC."""
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    salt, iv = os.urandom(16), os.urandom(16)
    secret = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(padded) + encryptor.finalize()
    info = asn1_keys.EncryptedPrivateKeyInfo({
        "encryption_algorithm": {"algorithm": "pbes2", "parameters": {
            "key_derivation_func": {"algorithm": "pbkdf2", "parameters": {
                "salt": asn1_algos.Pbkdf2Salt(name="specified", value=salt),
                "iteration_count": iterations, "key_length": 32,
                "prf": {"algorithm": "sha256", "parameters": None}}},
            "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv}}},
        "encrypted_data": sealed})
    return bytes(asn1_pem.armor("ENCRYPTED PRIVATE KEY", info.dump()))


class FileKeyStore:
    """Keys in ``<directory>/<name>.key.pem``, mode 0600, encrypted with the passphrase."""

    def __init__(self, directory: Path, passphrase: bytes,
                 iterations: int = KDF_ITERATIONS) -> None:
        if len(passphrase) < 12:
            raise KeyStoreError("the key passphrase must have at least 12 characters",
                                code="key-passphrase-too-short")
        self.directory = directory
        self._passphrase = passphrase
        self.iterations = iterations

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.key.pem"

    def save(self, name: str, key: SigningKey) -> str:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = encrypt_pkcs8(key, self._passphrase, self.iterations)
        path = self._path(name)
        # a temp name of its own (mode 0600) for every writer, threads of one process too
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.directory)
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        try:  # whole or not at all, and never over an existing key (FileExistsError)
            os.link(tmp, path)
        finally:
            tmp.unlink()
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"file:{name}:{hashlib.sha256(spki).hexdigest()[:16]}"

    def generate(self, name: str, curve: str) -> tuple[SigningKey, str]:
        key = ec.generate_private_key({"secp256r1": ec.SECP256R1(),
                                       "secp384r1": ec.SECP384R1()}[curve])
        return key, self.save(name, key)

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


def kind_of(name: str) -> str:
    """root, issuing (``issuing``, ``issuing-g<g>`` after rollovers), ocsp (the delegated
    signers ``ocsp-…``) or audit."""
    if name.startswith("ocsp-"):
        return "ocsp"
    return "issuing" if name.startswith("issuing") else name


class KeysByKind:
    """Each kind of key in its own store (``PARTNER_CA_KEY_STORES``): e.g. root and issuing
    on the HSM token, the delegated OCSP signers and the audit key in files."""

    def __init__(self, stores: dict[str, KeyStore | None]) -> None:
        self.stores = stores

    def _store(self, name: str) -> KeyStore:
        store = self.stores.get(kind_of(name))
        if store is None:
            raise KeyStoreError(f"key {name!r} lives in a store this process cannot open "
                                "(its passphrase or PIN is not set)", code="key-store-closed")
        return store

    def generate(self, name: str, curve: str) -> tuple[SigningKey, str]:
        return self._store(name).generate(name, curve)

    def save(self, name: str, key: SigningKey) -> str:
        return self._store(name).save(name, key)

    def load(self, name: str) -> SigningKey:
        return self._store(name).load(name)

    def exists(self, name: str) -> bool:
        return self._store(name).exists(name)



class OnDemand:
    """A key store opened at its first use, and again after a failure: the root's own token,
    plugged in only for ceremonies. While it cannot be opened, each use raises its
    KeyStoreError (``hsm-token-missing``) and nothing else is affected."""

    def __init__(self, opener: Callable[[], KeyStore]) -> None:
        self._opener = opener
        self._opened: KeyStore | None = None

    def _store(self) -> KeyStore:
        if self._opened is None:
            self._opened = self._opener()
        return self._opened

    def generate(self, name: str, curve: str) -> tuple[SigningKey, str]:
        return self._store().generate(name, curve)

    def save(self, name: str, key: SigningKey) -> str:
        return self._store().save(name, key)

    def load(self, name: str) -> SigningKey:
        return self._store().load(name)

    def exists(self, name: str) -> bool:
        return self._store().exists(name)
