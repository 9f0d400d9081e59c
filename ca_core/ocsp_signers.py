"""OCSP signing material of the CA: each issuing CA's delegated OCSP signer — issued with
the issuing key, renewed before it expires, its key kept in the OCSP key store apart from
the CA keys — and the root as the signer of its answers about the issuing CAs. A
collaborator of the one CA application (``CertificateAuthority.ocsp``); what is signed with
them is the CA role's (adapters/ca/ocsp_signing.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import uuid4

from cryptography.x509.oid import NameOID

from ca_core.authority import Authority, IssuingCa
from ca_core.certificate import serial_hex
from ca_core.conflicts import on_conflict
from ca_core.errors import DomainError, NotReady
from ca_core.ocsp import Signer, build_ocsp_signer
from ca_core.ports import KeyStore
from ca_core.x509profile import ca_name, from_pem, to_pem

if TYPE_CHECKING:
    from ca_core.ca import CertificateAuthority


def _pem_serial(pem: str) -> str:
    return serial_hex(from_pem(pem).serial_number)


class OcspSigners:
    """The delegated OCSP signers of one CA application's issuing CAs."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca
        self._cached: dict[int, Signer] = {}

    def signer(self, validity: timedelta = timedelta(days=30),
               renew_before: timedelta = timedelta(days=10)) -> Signer:
        """The current issuing CA's delegated OCSP signer, after ``signers``."""
        self.signers(validity, renew_before)
        return self.current()

    def signers(self, validity: timedelta = timedelta(days=30),
                renew_before: timedelta = timedelta(days=10)) -> dict[int, Signer]:
        """The delegated OCSP signer of every active issuing CA; a new one is issued where
        none exists or it expires within ``renew_before`` (which must exceed the longest
        response validity)."""
        for issuing in self.ca.authority().active():
            on_conflict()(self._renew_if_due, issuing.generation, validity, renew_before)
        return {issuing.generation: self.current(issuing.generation)
                for issuing in self.ca.authority().active()}

    def _renew_if_due(self, generation: int, validity: timedelta,
                      renew_before: timedelta) -> None:
        authority = self.ca.authority()
        issuing = authority.issuing[generation]
        now = self.ca.clock.now()
        not_after = issuing.ocsp_signer_not_after
        if issuing.ocsp_signer_pem is not None and not_after is not None and (
                not_after - now >= renew_before) and self._key_at_hand(issuing):
            return
        self._issue(authority, issuing, now, validity)

    def root(self) -> Signer:
        """The root itself as the OCSP signer for the issuing CA certificate it issued
        (RFC 6960 §2.6: the CA that issued the certificate may sign the response)."""
        root = from_pem(self.ca.authority().root_certificate_pem)
        return Signer(self.ca.hierarchy.root_key(), root, root)

    def _key_store(self) -> KeyStore:
        store = self.ca.ocsp_keys or self.ca.keys
        if store is None:
            raise NotReady("no key store for the OCSP signing key configured",
                           code="no-key-store")
        return store

    def _key_at_hand(self, issuing: IssuingCa) -> bool:
        """Whether the signer's key is where responders look for it (after the OCSP key
        store was first configured, the signer is replaced once)."""
        return issuing.ocsp_signer_key is not None and self._key_store().exists(
            issuing.ocsp_signer_key)

    def current(self, generation: int | None = None) -> Signer:
        """An issuing CA's delegated OCSP signer as recorded (never issues one); default:
        the current CA's. Opens only the OCSP signing key, never a CA key: the OCSP
        responder calls this."""
        authority = self.ca.authority()
        issuing = authority.issuing[authority.current if generation is None else generation]
        if issuing.ocsp_signer_pem is None or issuing.ocsp_signer_key is None:
            raise DomainError("no OCSP signer yet: the CA role issues one when it starts",
                              code="no-ocsp-signer")
        cached = self._cached.get(issuing.generation)
        if cached is None or cached.serial != _pem_serial(issuing.ocsp_signer_pem):
            cached = self._cached[issuing.generation] = Signer(
                self._key_store().load(issuing.ocsp_signer_key),
                from_pem(issuing.ocsp_signer_pem), from_pem(issuing.certificate_pem))
        return cached

    def _issue(self, authority: Authority, issuing: IssuingCa, now: datetime,
               validity: timedelta) -> None:
        store = self._key_store()
        issuer_key, issuer = self.ca.hierarchy.issuer_of(issuing.generation)
        key_name = f"ocsp-{uuid4().hex[:16]}"  # made before its certificate, so named apart
        key, _ = store.generate(key_name, "secp256r1")
        name = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        issuance = self.ca.issuance
        subject = ca_name(f"{name} OCSP Responder", issuance.organization, issuance.country)
        cert = build_ocsp_signer(issuer_key, issuer, key, subject, now, validity)
        authority.ocsp_signer_issued(serial=serial_hex(cert.serial_number),
                                     not_before=cert.not_valid_before_utc,
                                     not_after=cert.not_valid_after_utc,
                                     certificate_pem=to_pem(cert), key_name=key_name,
                                     timestamp=now, generation=issuing.generation)
        self.ca.save(authority)
