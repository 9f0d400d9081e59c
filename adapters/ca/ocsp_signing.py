"""The CA role's OCSP signing: the delegated signers are issued and renewed here (with the
issuing keys), a response is pre-signed for every new and revoked certificate and refreshed
at half its validity (with the delegated keys), and the root's answer about each issuing CA
(with the root key). The OCSP workers (adapters/relying/) only read what this writes: the
response store and the signers recorded on the CA's log."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from adapters.storage.persistence import ocsp_store
from ca_core.ca import CertificateAuthority
from ca_core.certificate import serial_hex
from ca_core.errors import DomainError
from ca_core.x509profile import from_pem
from projections.feed import catch_up
from projections.ocsp import CA_PREFIX, OcspResponseProjection, OcspStore
from projections.ocsp_signers import SignerCache

log = logging.getLogger("partner_ca.publishing")


class SignerRotation(SignerCache):
    """The signers as recorded, and their rotation: a new delegated signer where none is
    current or the current one expires within ``renew``."""

    def __init__(self, ca: CertificateAuthority, validity: timedelta, renew: timedelta) -> None:
        super().__init__(ca)
        self.validity, self.renew = validity, renew

    def rotate(self) -> None:
        self._current = self.ca.ocsp.signers(self.validity, self.renew)
        self._remember()


class OcspPublisher:
    """Keeps one response store current for the CA (``step``)."""

    def __init__(self, ca: CertificateAuthority, store: OcspStore, validity: timedelta,
                 signers: SignerRotation) -> None:
        self.ca = ca
        self.store = store
        self.signers = signers
        self.projection = OcspResponseProjection(store)
        self.projection.clock = ca.clock
        self.projection.validity = validity
        self.projection.signer = signers

    def issuing_serials(self) -> list[str]:
        """The serials of the active issuing CAs (after a rollover, more than one)."""
        return [serial_hex(from_pem(ca.certificate_pem).serial_number)
                for ca in self.ca.authority().active()]

    def sign_root_answers(self, validity: timedelta) -> list[str]:
        """The root's answers about every active issuing CA, signed now (the root key)."""
        signed = []
        for serial in self.issuing_serials():
            self.projection.refresh_issuing_ca(serial, self.ca.ocsp.root, validity, force=True)
            signed.append(serial)
        return signed

    def step(self, root_validity: timedelta | None = None) -> int:
        """One publishing step: rotate the signers if due, sign what is new, refresh what is
        old. Needs the issuing keys; the root key only to refresh the root's answers about
        the issuing CAs — while it is offline that is skipped (with a warning saying until
        when the current answers hold) and everything else goes on."""
        self.signers.rotate()
        done = catch_up(self.projection, self.ca)
        for serial in self.issuing_serials():
            try:
                done += self.projection.refresh_issuing_ca(serial, self.ca.ocsp.root,
                                                           root_validity)
            except DomainError as exc:
                row = self.store.get(CA_PREFIX + serial)
                log.warning("the root key is not at hand (%s), so its OCSP answer about "
                            "issuing CA %s is not renewed; %s — run 'partner-ca ca "
                            "sign-root-answers' with the root token", exc.code, serial,
                            f"the current one holds until {row.next_update.isoformat()}"
                            if row else "there is none yet")
        while (refreshed := self.projection.refresh()) > 0:
            done += refreshed
        return done


def ocsp_publisher(ca: CertificateAuthority, store_url: str, data_dir: Path,
                   response_hours: float, signer_days: float,
                   signer_renew_days: float) -> OcspPublisher:
    """The publisher of the CA's response store (``store_url``; SQLite under ``data_dir``)."""
    return OcspPublisher(ca, ocsp_store(store_url, data_dir),
                         timedelta(hours=response_hours),
                         SignerRotation(ca, timedelta(days=signer_days),
                                        timedelta(days=signer_renew_days)))
