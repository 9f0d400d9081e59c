"""OCSP response store: one pre-signed response per serial and CertID hash, fed from the CA's log.

The projection signs a response when a certificate is issued and again the
moment it is revoked (both in the same transaction as the tracking record);
``refresh`` re-signs responses that reached half their validity or were
signed by a retired signer. The responder only reads this table — answering a
request without a nonce neither signs nor touches the event store. Like the
status view, the store can be dropped and rebuilt from position 0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import singledispatchmethod
from typing import Any, Protocol

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from ca_core.certificate import Certificate, CertificateStatus
from ca_core.clock import Clock, SystemClock
from ca_core.errors import DomainError
from ca_core.ocsp import HASHES, Answer, Signer, sign_response

COLUMNS = ("serial", "status", "reason", "revoked_at", "sha1_der", "sha256_der", "this_update",
           "next_update", "signer_serial", "cause_position")


@dataclass(frozen=True)
class StoredResponse:
    serial: str
    status: str
    reason: str | None
    revoked_at: datetime | None
    sha1_der: bytes
    sha256_der: bytes
    this_update: datetime
    next_update: datetime
    signer_serial: str
    cause_position: int

    @property
    def answer(self) -> Answer:
        return Answer(self.serial, self.status, self.revoked_at, self.reason)

    def der(self, algorithm: str) -> bytes:
        return self.sha1_der if algorithm == "sha1" else self.sha256_der


#: Row key prefix of the root-signed answer about the issuing CA certificate (not a projection
#: of the CA's log: the CA role's publishing keeps it fresh, see ``refresh_issuing_ca``).
CA_PREFIX = "ca:"


class OcspStore(TrackingRecorder, ABC):
    """The pre-signed answers, in the projection's words: SQLite embedded, PostgreSQL in
    production (adapters/storage/sql_ocsp.py), memory (adapters/storage/memory_views.py)."""

    @abstractmethod
    def save(self, rows: list[StoredResponse], tracking: Tracking | None) -> None:
        """Upsert rows (and the tracking record, when given) in one transaction; a row never
        replaces one decided by a later log position."""

    @abstractmethod
    def get(self, serial: str) -> StoredResponse | None:
        """The answer for a serial (``CA_PREFIX`` + serial: the root's about an issuing CA)."""

    @abstractmethod
    def due(self, signed_before: datetime, signer_serials: str | Sequence[str],
            limit: int) -> list[StoredResponse]:
        """End-entity rows signed before ``signed_before`` or by none of the current signers
        (one per issuing CA), oldest first."""

    @abstractmethod
    def drop_signed_by(self, signer_serials: Sequence[str]) -> None:
        """Delete the answers these signers signed (those of a retired issuing CA)."""

    @abstractmethod
    def rows(self) -> list[StoredResponse]:
        """The end-entity rows (the projection of the CA's log), by serial."""

    @abstractmethod
    def partition(self, part: int, parts: int) -> list[StoredResponse]:
        """Every row (the root's answers about the issuing CA too) whose serial's last hex
        digit falls in partition ``part`` of ``parts``, so that processes can share them."""

    @abstractmethod
    def newest_change(self) -> datetime | None:
        """The latest signing time in the store (where a cache starts following changes)."""

    @abstractmethod
    def oldest_signing(self) -> datetime | None:
        """The earliest signing time in the store (how stale the oldest answer is)."""

    @abstractmethod
    def changed_since(self, moment: datetime | None) -> list[tuple[str, datetime]]:
        """(serial, this_update) of rows signed after ``moment`` (all rows if None)."""


def signed(signer: Signer, answer: Answer, now: datetime, validity: timedelta,
           cause_position: int) -> StoredResponse:
    """Both pre-signed variants (SHA-1 and SHA-256 CertID) of one answer."""
    ders = {alg: sign_response(signer, answer, alg, now, validity) for alg in HASHES}
    return StoredResponse(
        serial=answer.serial, status=answer.status, reason=answer.reason,
        revoked_at=answer.revoked_at, sha1_der=ders["sha1"], sha256_der=ders["sha256"],
        this_update=now, next_update=min(now + validity, signer.certificate.not_valid_after_utc),
        signer_serial=signer.serial, cause_position=cause_position)


def _answer(event: Any) -> Answer | None:
    if isinstance(event, Certificate.CertificateIssued):
        return Answer(event.serial, CertificateStatus.GOOD)
    if isinstance(event, Certificate.CertificateRevoked):
        return Answer(event.serial, CertificateStatus.REVOKED, event.revoked_at, event.reason)
    return None  # expiry changes nothing: an expired certificate keeps its last answer


class Signers(Protocol):
    """The delegated OCSP signer of each active issuing CA (``SignerCache`` in
    projections/ocsp_signers.py; the CA role's ``SignerRotation`` rotates them)."""

    def __call__(self, generation: int | None = None) -> Signer:
        """The signer of issuing CA ``generation`` (None: the current one); DomainError
        ``issuing-ca-retired`` for one that no longer answers."""
        ...

    def current(self) -> dict[int, Signer]:
        """Every active issuing CA's signer."""
        ...

    def generation_of(self, signer_serial: str) -> int:
        """Which issuing CA a signer (current or earlier) belongs to."""
        ...


class OcspResponseProjection(Projection[OcspStore]):
    """CertificateIssued → a ``good`` response; CertificateRevoked → a ``revoked`` one at once."""

    name = "ocsp_responses"
    topics = (get_topic(Certificate.CertificateIssued), get_topic(Certificate.CertificateRevoked),
              get_topic(Certificate.CertificateExpired))
    #: set before use: the delegated signers, the clock and the response validity
    signer: Signers
    clock: Clock = SystemClock()
    validity: timedelta = timedelta(hours=24)

    def _save(self, answer: Answer, tracking: Tracking, generation: int) -> None:
        try:
            signer = self.signer(generation)
        except DomainError:  # an issuing CA retired: its certificates have all expired
            self.view.insert_tracking(tracking)
            return
        self.view.save([signed(signer, answer, self.clock.now(), self.validity,
                               tracking.notification_id)], tracking)

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Expiry changes nothing: an expired certificate keeps its last answer."""
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, e: Certificate.CertificateIssued, tracking: Tracking) -> None:
        self._save(Answer(e.serial, CertificateStatus.GOOD), tracking, e.issuer_generation)

    @process_event.register
    def _(self, e: Certificate.CertificateRevoked, tracking: Tracking) -> None:
        self._save(Answer(e.serial, CertificateStatus.REVOKED, e.revoked_at, e.reason), tracking,
                   e.issuer_generation)

    def process_page(self, page: list[tuple[int, Any]], application_name: str) -> None:
        """A page of the log (projections/feed.py) signed and saved in one transaction with
        one signing time, tracked by its last position (a rebuild from position 0 signs
        every certificate once)."""
        rows: dict[str, StoredResponse] = {}
        signers, now = self.signer.current(), self.clock.now()
        for position, event in page:
            answer = _answer(event)
            signer = signers.get(getattr(event, "issuer_generation", 0))
            if answer is not None and signer is not None:  # none: a retired issuing CA
                rows[answer.serial] = signed(signer, answer, now, self.validity, position)
        self.view.save(list(rows.values()), Tracking(application_name, page[-1][0]))

    def refresh_issuing_ca(self, issuing_serial: str, root: Callable[[], Signer],
                           validity: timedelta | None = None, force: bool = False) -> bool:
        """Re-sign the root's ``good`` answer about an issuing CA certificate when it is
        missing or past half its validity (so that relying parties checking the whole chain,
        such as nginx with ``ssl_ocsp on``, get an answer), or at once with ``force``;
        ``root`` is called only then. ``validity``: of the root's answers (default: as the
        others')."""
        validity = validity or self.validity
        key = CA_PREFIX + issuing_serial
        now = self.clock.now()
        row = self.view.get(key)
        if not force and row is not None and row.this_update > now - validity / 2:
            return False
        fresh = signed(root(), Answer(issuing_serial, CertificateStatus.GOOD), now, validity, 0)
        self.view.save([replace(fresh, serial=key)], None)
        return True

    def refresh(self, limit: int = 1000) -> int:
        """Re-sign responses past half their validity or signed by a replaced signer, each
        with the current signer of the issuing CA that signed the certificate."""
        signers = self.signer.current()
        now = self.clock.now()
        due = self.view.due(now - self.validity / 2, [s.serial for s in signers.values()],
                            limit)
        fresh, gone = [], set()
        for row in due:
            signer = signers.get(self.signer.generation_of(row.signer_serial))
            if signer is None:  # signed for an issuing CA since retired
                gone.add(row.signer_serial)
            else:
                fresh.append(signed(signer, row.answer, now, self.validity, row.cause_position))
        if fresh:
            self.view.save(fresh, None)
        self.view.drop_signed_by(sorted(gone))
        return len(due)
