"""The CA role's publishing: what relying parties are served is signed here, never by them.

- OCSP: the delegated signer is issued and renewed (with the issuing key), a response is
  pre-signed for every new and revoked certificate and refreshed at half its validity (with
  the delegated key), and the root's answer about the issuing CA (with the root key);
  ``serve --role ocsp`` only reads them.
- CRL: a new full CRL (and its shards) within ``crl_delay_seconds`` of a revocation and at
  half its validity, written where ``serve --role crl`` serves it (adapters/storage/crl_files.py).

``serve`` runs this in the process that holds the CA keys: ``--role ca`` (with Kafka, worker
0 of the CA inbox), or the embedded ``--role all|portal|ca``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.relying.ocsp_http import SignerCache, ocsp_responder
from adapters.settings import Settings
from adapters.storage.crl_files import CrlFile, CrlFiles, served_crl, write_crls
from adapters.storage.persistence import status_view
from ca_core.ca import CertificateAuthority, PublishedCrls
from ca_core.certificate import serial_hex
from projections.status import RevocationStatusProjection, catch_up

log = logging.getLogger("partner_ca.publishing")


def maintain_ocsp(responder: Any, ca: CertificateAuthority) -> int:
    """One OCSP publishing step for ``responder``'s store: rotate the signer if due, sign
    what is new, refresh what is old. Needs the CA keys."""
    signers = responder.projection.signer
    if isinstance(signers, SignerCache):
        signers.rotate()
    done: int = responder.projection.catch_up(ca)
    done += responder.projection.refresh_issuing_ca(
        serial_hex(responder.issuer.serial_number), ca.root_signer)
    while (refreshed := responder.projection.refresh()) > 0:
        done += refreshed
    return done


@dataclass(frozen=True)
class CrlPublication:
    number: int
    revoked: int
    log_position: int
    crls: PublishedCrls


class CrlPublisher:
    """Keeps the served CRL current: signs the next full CRL when a revocation the served one
    lacks has been pending for ``delay``, at half its validity, and whenever the served file
    is missing or is not known to reflect the log (another process published a newer one
    somewhere else, or a publication was recorded but never written here)."""

    def __init__(self, ca: CertificateAuthority, status: RevocationStatusProjection, target: Path,
                 delay: timedelta, validity: timedelta) -> None:
        self.ca = ca
        self.status = status
        self.target = target
        self.delay = delay
        self.validity = validity
        self.pending_since: datetime | None = None
        self.files = CrlFiles()
        #: CRL number → CA log position it reflects, for the CRLs this publisher wrote
        self._reflects: dict[int, int] = {}

    def publish(self, copy: Path | None = None) -> CrlPublication:
        """Sign the next CRL from the caught-up status view and put it where it is served
        (and at ``copy``)."""
        catch_up(self.status, self.ca)
        entries = self.status.view.revoked_entries()
        position = self.status.view.max_tracking_id(self.ca.name) or 0
        published = self.ca.publish_crls(entries, position, self.validity)
        write_crls(published, self.target, copy)
        number = self.ca.authority().crl_number
        self._reflects = {number: position}
        self.pending_since = None
        log.info("CRL %d published: %d revoked, CA log position %d", number, len(entries),
                 position)
        return CrlPublication(number, len(entries), position, published)

    def served_position(self, served: CrlFile) -> int | None:
        """The CA log position the served CRL reflects, when known."""
        if served.number in self._reflects:
            return self._reflects[served.number]
        authority = self.ca.authority()
        if served.number == authority.crl_number:  # e.g. written here by `partner-ca crl`
            return authority.crl_log_position
        return None

    def tick(self) -> bool:
        """Publish if due; returns whether a CRL was published."""
        catch_up(self.status, self.ca)
        now = self.ca.clock.now()
        served = self.files.read(self.target)
        reflects = self.served_position(served) if served is not None else None
        if served is None or reflects is None or now >= served.this_update + self.validity / 2:
            self.publish()
            return True
        if self.status.view.revoked_position() > reflects:
            self.pending_since = self.pending_since or now
            if now - self.pending_since >= self.delay:
                self.publish()
                return True
        else:
            self.pending_since = None
        return False


def crl_publisher(ca: CertificateAuthority, settings: Settings) -> CrlPublisher:
    status = RevocationStatusProjection(status_view(settings.store_url("ca"), settings.data_dir))
    return CrlPublisher(ca, status, served_crl(settings.data_dir),
                        timedelta(seconds=settings.crl_delay_seconds),
                        timedelta(hours=settings.crl_validity_hours))


class CaPublishing:
    """OCSP responses and CRLs kept current from the CA's log, in the CA role's process."""

    def __init__(self, ca: CertificateAuthority, settings: Settings) -> None:
        self.ca = ca
        self.ocsp = ocsp_responder(ca, settings)
        self.crl = crl_publisher(ca, settings)

    def step(self) -> None:
        maintain_ocsp(self.ocsp, self.ca)
        self.crl.tick()


def run_publishing(ca: CertificateAuthority, settings: Settings,
                   stop: threading.Event) -> None:
    """``serve``'s publishing thread: a step at once (relying parties get answers as soon as
    they start), then every ``relying_poll_seconds`` until ``stop``."""
    publishing = CaPublishing(ca, settings)
    while True:
        try:
            publishing.step()
        except Exception:
            log.exception("OCSP/CRL publishing failed; will try again")
        if stop.wait(settings.relying_poll_seconds):
            return
