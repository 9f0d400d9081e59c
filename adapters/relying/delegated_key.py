"""The delegated OCSP signing keys as the OCSP workers see them: read-only."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ca_core.errors import NotReady
from ca_core.signatures import SigningKey


class DelegatedKeyFiles:
    """Read-only access to the delegated OCSP signing keys (``<data_dir>/ocsp-keys``, written
    by the CA role, encrypted with PARTNER_CA_OCSP_KEY_PASSPHRASE): all the responder holds."""

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        self.directory = directory
        self._passphrase = passphrase

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.key.pem"

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def load(self, name: str) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(self._path(name).read_bytes(),
                                                     self._passphrase)
        except (OSError, ValueError, TypeError):
            raise NotReady(f"cannot open the OCSP signing key {name!r} in {self.directory}",
                              code="ocsp-key-unavailable") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise NotReady(f"{name!r} is not an EC key", code="ocsp-key-unavailable")
        return key

    def save(self, name: str, key: SigningKey) -> str:
        raise NotReady("the OCSP responder does not write keys", code="read-only")
