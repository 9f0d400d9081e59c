"""Composition root: wires the Portal, the CA, the key store and a transport from Settings."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from adapters.ca.keystore import FileKeyStore, KeysByKind, OnDemand
from adapters.settings import Settings
from adapters.storage.bulkread import bulk_reader_for
from adapters.storage.persistence import (
    open_store,
    private_directory,
    status_view,
    store_env,
)
from adapters.transport.inprocess import InProcessTransport
from ca_core.ca import CaNotInitialised, CertificateAuthority
from ca_core.clock import Clock, ManualClock, SystemClock
from ca_core.portal import Portal, TrustChain
from ca_core.ports import KeyStore, StatusSource, Transport
from ca_core.x509profile import split_pems
from projections.feed import catch_up
from projections.status import RevocationStatusProjection, ViewStatusSource

T = TypeVar("T")


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
        close_transport = getattr(self.transport, "close", None)
        if close_transport is not None:
            close_transport()
        self.portal.close()
        self.ca.close()


def portal_secret(settings: Settings) -> bytes:
    """The portal's HMAC key (pickup links, challenges): configured, or generated once into data_dir."""
    if settings.portal_secret is not None:
        return settings.portal_secret.get_secret_value().encode()
    path = settings.data_dir / "portal.secret"
    if not path.exists():
        private_directory(settings.data_dir)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def key_store(settings: Settings, passphrase: str | None) -> KeyStore | None:
    """The CA's key store: key files opened with the passphrase, or the HSM token opened with
    its PIN (``PARTNER_CA_KEY_STORE=pkcs11``); None when this process has neither."""
    stores: dict[str, KeyStore | None] = {}
    if "pkcs11" in settings.key_store_kinds:
        pin = settings.hsm_user_pin()
        from adapters.ca.hsm import Pkcs11KeyStore  # the PKCS#11 library only with a token

        stores["pkcs11"] = None if pin is None else Pkcs11KeyStore(
            settings.hsm_module, settings.hsm_token_label, pin)
    if "file" in settings.key_store_kinds:
        secret = passphrase or (
            settings.key_passphrase.get_secret_value() if settings.key_passphrase else None)
        stores["file"] = None if not secret else FileKeyStore(
            settings.ca_key_dir, secret.encode(), settings.key_kdf_iterations)
    by_kind = {kind: stores[settings.store_of(kind)]
               for kind in ("root", "issuing", "ocsp", "audit")}
    if settings.root_on_own_token:  # opened when the root is needed, not at start
        root_pin = settings.hsm_root_user_pin()
        by_kind["root"] = None if root_pin is None else OnDemand(
            lambda: _pkcs11(settings.hsm_module, settings.hsm_root_token_label, root_pin))
    elif len(stores) == 1:
        return next(iter(stores.values()))
    if not any(by_kind.values()):
        return None
    return KeysByKind(by_kind)


def audit_key_store(settings: Settings, ca_keys: KeyStore | None = None) -> KeyStore | None:
    """The store of the audit (tree-head) key alone — it opens no other key: its own files
    under PARTNER_CA_AUDIT_KEY_PASSPHRASE, else (``ca_keys``, in a process that holds the CA
    keys anyway) the CA key store; None when this process may sign no head."""
    if settings.audit_key_passphrase is not None:
        store: KeyStore | None = FileKeyStore(
            settings.audit_keys_dir, settings.audit_key_passphrase.get_secret_value().encode(),
            settings.key_kdf_iterations)
    else:
        store = ca_keys
    if store is None:
        return None
    return KeysByKind({"root": None, "issuing": None, "ocsp": None, "audit": store})


def _pkcs11(module: str, label: str, pin: str) -> KeyStore:
    from adapters.ca.hsm import Pkcs11KeyStore  # the PKCS#11 library only with a token

    return Pkcs11KeyStore(module, label, pin)


def build_ca(settings: Settings, clock: Clock, passphrase: str | None = None
             ) -> CertificateAuthority:
    keys = key_store(settings, passphrase)
    ca = open_store("ca", settings.store_url("ca"), settings.data_dir, lambda: CertificateAuthority(
        store_env(settings.store_url("ca"), settings.data_dir, "ca"),
        keys=keys, clock=clock, policy=settings.issuance_policy()))
    if settings.ocsp_key_passphrase is not None:  # delegated OCSP keys apart from the CA keys
        ca.ocsp_keys = FileKeyStore(settings.ocsp_key_dir,
                                    settings.ocsp_key_passphrase.get_secret_value().encode(),
                                    settings.key_kdf_iterations)
    ca.bulk_reader = bulk_reader_for(ca.recorder)
    return ca


def build_portal(settings: Settings, clock: Clock,
                 trust: Callable[[], TrustChain] | None = None,
                 status_source: StatusSource | None = None) -> Portal:
    secret = portal_secret(settings)
    portal = open_store("portal", settings.store_url("portal"), settings.data_dir, lambda: Portal(
        store_env(settings.store_url("portal"), settings.data_dir, "portal"),
        clock=clock, policy=settings.portal_policy(), secret=secret,
        trust=trust or (lambda: chain_from_file(settings.chain_path)),
        status_source=status_source))
    portal.bulk_reader = bulk_reader_for(portal.recorder)
    return portal


def chain_from_file(path: Path) -> TrustChain:
    """The CA chain the portal trusts, from the PEM file ``init`` writes (issuing, then root)."""
    try:
        text = path.read_text()
    except OSError:
        raise CaNotInitialised(f"no CA chain at {path}: run 'partner-ca init' or set "
                               "PARTNER_CA_CHAIN_FILE") from None
    pems = split_pems(text)
    if len(pems) < 2:
        raise CaNotInitialised(f"{path} must hold the issuing CA certificates, then the root")
    return TrustChain(tuple(pems[:-1]), pems[-1])


def make_clock(settings: Settings) -> Clock:
    return ManualClock(settings.now) if settings.now else SystemClock()


class NoTransport:
    """For commands run beside ``serve``: the serve processes move the messages."""

    def pump(self) -> int:
        return 0


def build(settings: Settings, clock: Clock | None = None, passphrase: str | None = None,
          transport: str | None = "auto") -> PartnerCa:
    """Both applications from settings, linked in-process (default) or over Kafka.

    ``transport``: ``auto`` (Kafka when configured, else in-process), ``in-process``,
    ``kafka``, or None (no transport: ``serve`` processes deliver the messages).
    """
    clock = clock or make_clock(settings)
    ca = build_ca(settings, clock, passphrase)
    try:
        return _link(settings, clock, ca, transport)
    except BaseException:
        ca.close()
        raise


def _link(settings: Settings, clock: Clock, ca: CertificateAuthority,
          transport: str | None) -> PartnerCa:
    def trust() -> TrustChain:
        authority = ca.authority()
        return TrustChain(tuple(ca.certificate_pem for ca in authority.active()),
                          authority.root_certificate_pem)

    # R5 asks the revocation-status view, caught up from the CA's log before each answer
    status = RevocationStatusProjection(status_view(settings.store_url("ca"), settings.data_dir))
    portal = build_portal(settings, clock, trust=trust, status_source=ViewStatusSource(
        status.view, clock, refresh=lambda: catch_up(status, ca)))
    link: Transport
    if transport is None:
        link = NoTransport()
    elif transport == "kafka" or (transport == "auto" and settings.kafka_bootstrap):
        from adapters.entrypoints.kafka_wiring import KafkaTransport

        link = KafkaTransport(portal, ca, settings)
    else:
        link = InProcessTransport(portal, ca)
    return PartnerCa(portal, ca, link, clock, settings)
