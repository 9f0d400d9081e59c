"""Revocation-status view: one row per certificate, fed from the CA's log with tracking.

The same view answers ops (`partner-ca status`), the portal's certificate login
(R5) and, later, the OCSP responder and the CRL. Every row names the log
position of the event that decided it (``cause_position``). The view can be
dropped and rebuilt from position 0; the rebuilt rows equal the live ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from ca_core.certificate import Certificate, CertificateStatus, effective_status
from ca_core.clock import Clock
from ca_core.crl import RevokedEntry


@dataclass(frozen=True)
class StatusRow:
    """The current status of one certificate and its cause."""

    serial: str
    user_id: str
    module: str
    request_id: UUID
    not_before: datetime
    not_after: datetime
    status: str
    reason: str | None
    changed_at: datetime | None
    changed_by: str | None
    cause_position: int

    def changed(self, status: str, reason: str | None, changed_at: datetime | None,
                changed_by: str | None, cause_position: int) -> StatusRow:
        """This row with a new status (``dataclasses.replace`` costs about four times as much,
        which shows when a history is replayed)."""
        return StatusRow(self.serial, self.user_id, self.module, self.request_id,
                         self.not_before, self.not_after, status, reason, changed_at,
                         changed_by, cause_position)


COLUMNS = ("serial", "user_id", "module", "request_id", "not_before", "not_after", "status",
           "reason", "changed_at", "changed_by", "cause_position")


class StatusView(TrackingRecorder, ABC):
    """Where the rows live, in the projection's words: SQLite embedded, PostgreSQL in
    production (adapters/storage/sql_status.py), memory (adapters/storage/memory_views.py)."""

    def save_row(self, row: StatusRow, tracking: Tracking) -> None:
        """Write the row and the tracking record in one transaction."""
        self.save_rows([row], tracking)

    @abstractmethod
    def save_rows(self, rows: list[StatusRow], tracking: Tracking | None) -> None:
        """Write rows (and the tracking record, when given) in one transaction."""

    @abstractmethod
    def get(self, serial: str) -> StatusRow | None:
        """The row of one certificate (None: not in the view)."""

    @abstractmethod
    def for_user(self, user_id: str) -> list[StatusRow]:
        """A user's certificates, oldest first."""

    @abstractmethod
    def rows(self) -> list[StatusRow]:
        """Every row, by serial."""

    @abstractmethod
    def revoked_entries(self) -> list[RevokedEntry]:
        """Every revoked certificate as a CRL entry (one query, no row objects: 10^6 rows)."""

    @abstractmethod
    def revoked_position(self) -> int:
        """The log position of the newest revocation in the view (0 if none)."""


def status_row(values: Any) -> StatusRow:
    """A row from its stored column values (either store)."""
    data = dict(zip(COLUMNS, values, strict=True))
    for key in ("not_before", "not_after", "changed_at"):
        if isinstance(data[key], str):
            data[key] = datetime.fromisoformat(data[key])
    if not isinstance(data["request_id"], UUID):
        data["request_id"] = UUID(str(data["request_id"]))
    return StatusRow(**data)


class RevocationStatusProjection(Projection[StatusView]):
    """CertificateIssued / CertificateRevoked / CertificateExpired → one row per serial."""

    name = "revocation_status"
    topics = (get_topic(Certificate.CertificateIssued), get_topic(Certificate.CertificateRevoked),
              get_topic(Certificate.CertificateExpired))

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, e: Certificate.CertificateIssued, tracking: Tracking) -> None:
        self.view.save_row(issued_row(e, tracking.notification_id), tracking)

    @process_event.register
    def _(self, e: Certificate.CertificateRevoked, tracking: Tracking) -> None:
        row = revoked_row(self.view.get(e.serial), e, tracking.notification_id)
        if row is None:
            self.view.insert_tracking(tracking)
        else:
            self.view.save_row(row, tracking)

    @process_event.register
    def _(self, e: Certificate.CertificateExpired, tracking: Tracking) -> None:
        row = expired_row(self.view.get(e.serial), e, tracking.notification_id)
        if row is None:
            self.view.insert_tracking(tracking)
        else:
            self.view.save_row(row, tracking)

    def process_page(self, page: list[tuple[int, Any]], application_name: str) -> None:
        """A page of the log in one transaction (as ``process_event`` one by one would leave
        the view), tracked by its last position: one write per page, not per event."""
        rows: dict[str, StatusRow] = {}

        def current(serial: str) -> StatusRow | None:
            return rows[serial] if serial in rows else self.view.get(serial)

        for position, e in page:
            row: StatusRow | None = None
            if isinstance(e, Certificate.CertificateIssued):
                row = issued_row(e, position)
            elif isinstance(e, Certificate.CertificateRevoked):
                row = revoked_row(current(e.serial), e, position)
            elif isinstance(e, Certificate.CertificateExpired):
                row = expired_row(current(e.serial), e, position)
            if row is not None:
                rows[row.serial] = row
        tracking = Tracking(application_name, page[-1][0])
        if rows:
            self.view.save_rows(list(rows.values()), tracking)
        else:
            self.view.insert_tracking(tracking)


def issued_row(e: Certificate.CertificateIssued, position: int) -> StatusRow:
    return StatusRow(
        serial=e.serial, user_id=e.user_id, module=e.module, request_id=e.request_id,
        not_before=e.not_before, not_after=e.not_after, status=CertificateStatus.GOOD.value,
        reason=None, changed_at=None, changed_by=None, cause_position=position)


def revoked_row(row: StatusRow | None, e: Certificate.CertificateRevoked,
                position: int) -> StatusRow | None:
    """The row after a revocation (None: no such certificate in the view, nothing changes)."""
    if row is None:
        return None
    return row.changed(CertificateStatus.REVOKED.value, e.reason, e.revoked_at, e.revoked_by,
                       position)


def expired_row(row: StatusRow | None, e: Certificate.CertificateExpired,
                position: int) -> StatusRow | None:
    """The row after an expiry (None: unknown, or already revoked: nothing changes)."""
    if row is None or row.status != CertificateStatus.GOOD:
        return None
    return row.changed(CertificateStatus.EXPIRED.value, row.reason, e.timestamp,
                       row.changed_by, position)


class ViewStatusSource:
    """The portal's R5 status source: the revocation-status view.

    With ``refresh`` (where the CA's log is at hand) the view is caught up before
    each answer; otherwise whoever maintains the view (``serve --role crl``) keeps it
    current.
    """

    def __init__(self, view: StatusView, clock: Clock,
                 refresh: Callable[[], object] | None = None) -> None:
        self.view = view
        self.clock = clock
        self.refresh = refresh

    def status_of(self, serial: str) -> str:
        if self.refresh is not None:
            self.refresh()
        row = self.view.get(serial)
        if row is None:
            return CertificateStatus.UNKNOWN
        return effective_status(row.status, row.not_after, self.clock.now())
