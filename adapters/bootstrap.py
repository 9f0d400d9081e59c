"""Composition root: wires the Portal, the CA, the key store and a transport from Settings."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from adapters.inprocess import InProcessTransport
from adapters.keystore import FileKeyStore
from adapters.persistence import store_env
from adapters.settings import Settings
from ca_core.ca import CertificateAuthority
from ca_core.clock import Clock, ManualClock, SystemClock
from ca_core.portal import Portal, TrustChain
from ca_core.ports import Transport


@dataclass
class PartnerCa:
    """The running system: both applications and the transport between them."""

    portal: Portal
    ca: CertificateAuthority
    transport: Transport
    clock: Clock
    settings: Settings = field(repr=False)

    def pump(self) -> int:
        return self.transport.pump()

    def close(self) -> None:
        self.portal.close()
        self.ca.close()


def portal_secret(settings: Settings) -> bytes:
    """The portal's HMAC key (pickup links, challenges): configured, or generated once into data_dir."""
    if settings.portal_secret is not None:
        return settings.portal_secret.get_secret_value().encode()
    path = settings.data_dir / "portal.secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def key_store(settings: Settings, passphrase: str | None) -> FileKeyStore | None:
    secret = passphrase or (
        settings.key_passphrase.get_secret_value() if settings.key_passphrase else None)
    if secret is None:
        return None
    return FileKeyStore(Path(settings.data_dir) / "keys", secret.encode())


def build(settings: Settings, clock: Clock | None = None,
          passphrase: str | None = None) -> PartnerCa:
    """Build the embedded system (in-process transport) from settings."""
    clock = clock or (ManualClock(settings.now) if settings.now else SystemClock())
    ca = CertificateAuthority(
        store_env(settings.database_url, settings.data_dir, "ca"),
        keys=key_store(settings, passphrase), clock=clock, policy=settings.issuance_policy(),
    )

    def trust() -> TrustChain:
        authority = ca.authority()
        return TrustChain(authority.issuing_certificate_pem, authority.root_certificate_pem)

    portal = Portal(
        store_env(settings.database_url, settings.data_dir, "portal"),
        clock=clock, policy=settings.portal_policy(), secret=portal_secret(settings),
        trust=trust, status_source=ca,
    )
    return PartnerCa(portal, ca, InProcessTransport(portal, ca), clock, settings)
