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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from adapters.ca.ocsp_signing import OcspPublisher
from adapters.observability import CRLS
from adapters.periodic import run_periodically
from adapters.storage.crl_files import CrlFile, CrlFiles, write_crls
from adapters.storage.wakeups import Wakeups
from ca_core.authority import for_generation
from ca_core.ca import CertificateAuthority
from ca_core.crl_signing import PublishedCrls
from projections.feed import catch_up
from projections.status import RevocationStatusProjection

log = logging.getLogger("partner_ca.publishing")


@dataclass(frozen=True)
class CrlPublication:
    """What one publication signed for the current issuing CA (``others``: the CRLs of the
    earlier issuing CAs still answering, by generation)."""

    number: int
    revoked: int
    log_position: int
    crls: PublishedCrls
    others: dict[int, PublishedCrls] = field(default_factory=dict)


class CrlPublisher:
    """Keeps the served CRLs current, one per active issuing CA (``issuing.crl`` for the
    first, ``issuing-g<g>.crl`` after a rollover): signs the next ones when a revocation the
    served ones lack has been pending for ``delay``, at half their validity, and whenever a
    served file is missing or is not known to reflect the log (another process published a
    newer one somewhere else, or a publication was recorded but never written here)."""

    def __init__(self, ca: CertificateAuthority, status: RevocationStatusProjection, target: Path,
                 delay: timedelta, validity: timedelta) -> None:
        self.ca = ca
        self.status = status
        self.target = target
        self.delay = delay
        self.validity = validity
        self.pending_since: datetime | None = None
        self.files = CrlFiles()
        #: (generation, CRL number) → CA log position it reflects, for the CRLs written here
        self._reflects: dict[tuple[int, int], int] = {}

    def target_of(self, generation: int) -> Path:
        return self.target.with_name(for_generation(self.target.name, generation))

    def publish(self, copy: Path | None = None) -> CrlPublication:
        """Sign the next CRL of every active issuing CA from the caught-up status view and
        put them where they are served (the current CA's also at ``copy``)."""
        catch_up(self.status, self.ca)
        entries = self.status.view.revoked_entries()
        position = self.status.view.max_tracking_id(self.ca.name) or 0
        by_issuer = self.ca.crls.generation_of(entries)
        authority = self.ca.authority()
        done: dict[int, PublishedCrls] = {}
        for issuing in authority.active():
            g = issuing.generation
            done[g] = self.ca.crls.publish_crls(by_issuer.get(g, []), position, self.validity, g)
            write_crls(done[g], self.target_of(g), copy if g == authority.current else None, g)
        authority = self.ca.authority()
        self._reflects = {(g, authority.issuing[g].crl_number): position for g in done}
        CRLS.inc()
        self.pending_since = None
        number = authority.crl_number
        revoked = len(by_issuer.get(authority.current, []))
        log.info("CRL %d published: %d revoked, CA log position %d%s", number, revoked,
                 position, f" (and the CRLs of {len(done) - 1} earlier issuing CAs)"
                 if len(done) > 1 else "",
                 extra={"crl_number": number, "log_position": position, "revoked": revoked})
        return CrlPublication(number, revoked, position, done[authority.current],
                              {g: crls for g, crls in done.items() if g != authority.current})

    def served_position(self, served: CrlFile, generation: int | None = None) -> int | None:
        """The CA log position a served CRL reflects, when known."""
        authority = self.ca.authority()
        g = authority.current if generation is None else generation
        if (g, served.number) in self._reflects:
            return self._reflects[(g, served.number)]
        if served.number == authority.issuing[g].crl_number:  # e.g. by `partner-ca crl`
            return authority.issuing[g].crl_log_position
        return None

    def tick(self) -> bool:
        """Publish if due; returns whether CRLs were published."""
        catch_up(self.status, self.ca)
        now = self.ca.clock.now()
        reflected: list[int] = []
        for issuing in self.ca.authority().active():
            served = self.files.read(self.target_of(issuing.generation))
            reflects = (self.served_position(served, issuing.generation)
                        if served is not None else None)
            if served is None or reflects is None or now >= served.this_update + \
                    self.validity / 2:
                self.publish()
                return True
            reflected.append(reflects)
        if self.status.view.revoked_position() > min(reflected):
            self.pending_since = self.pending_since or now
            if now - self.pending_since >= self.delay:
                self.publish()
                return True
        else:
            self.pending_since = None
        return False


class CaPublishing:
    """OCSP responses and CRLs kept current from the CA's log, in the CA role's process."""

    def __init__(self, ca: CertificateAuthority, ocsp: OcspPublisher, crl: CrlPublisher,
                 root_validity: timedelta) -> None:
        self.ca, self.ocsp, self.crl, self.root_validity = ca, ocsp, crl, root_validity

    def step(self) -> None:
        self.ocsp.step(self.root_validity)
        self.crl.tick()
        if self.ca.hierarchy.retire_due():  # its last certificate expired: no CRL or OCSP any more
            self.ocsp.step(self.root_validity)


def run_publishing(publishing: CaPublishing, wakeups: Wakeups, poll_seconds: float,
                   stop: threading.Event) -> None:
    """``serve``'s publishing thread: a step at once (relying parties get answers as soon as
    they start), then whenever the CA's log grows (``wakeups``: PostgreSQL NOTIFY,
    adapters/storage/wakeups.py) and at least every ``poll_seconds``, until ``stop``."""
    def step() -> float:
        try:
            publishing.step()
        finally:
            woken = wakeups.wait(poll_seconds)
        return MIN_STEP_SECONDS if woken else 0.0  # a burst of commits: one step for all

    try:
        run_periodically("OCSP/CRL publishing", step, stop, log)
    finally:
        wakeups.close()


#: the shortest pause between two publishing steps woken by new CA events
MIN_STEP_SECONDS = 0.02
