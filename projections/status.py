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

from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import get_topic
from psycopg.rows import tuple_row

from ca_core.certificate import Certificate, CertificateStatus, effective_status
from ca_core.clock import Clock
from ca_core.crl import RevokedEntry
from ca_core.eventmodel import read_log


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
    """Where the rows live (SQLite embedded, PostgreSQL in production)."""

    def save_row(self, row: StatusRow, tracking: Tracking) -> None:
        """Write the row and the tracking record in one transaction."""
        self.save_rows([row], tracking)

    @abstractmethod
    def save_rows(self, rows: list[StatusRow], tracking: Tracking | None) -> None:
        """Write rows (and the tracking record, when given) in one transaction."""

    #: The driver's parameter placeholder (sqlite3: ?, psycopg: %s).
    placeholder = "?"

    @abstractmethod
    def _select(self, where: str, args: tuple[Any, ...]) -> list[StatusRow]: ...

    def get(self, serial: str) -> StatusRow | None:
        found = self._select(f"WHERE serial = {self.placeholder}", (serial,))
        return found[0] if found else None

    def for_user(self, user_id: str) -> list[StatusRow]:
        return self._select(f"WHERE user_id = {self.placeholder} ORDER BY not_before, serial",
                            (user_id,))

    def rows(self) -> list[StatusRow]:
        return self._select("ORDER BY serial", ())

    @abstractmethod
    def revoked_entries(self) -> list[RevokedEntry]:
        """Every revoked certificate as a CRL entry (one query, no row objects: 10^6 rows)."""

    def revoked_position(self) -> int:
        """The log position of the newest revocation in the view (0 if none)."""
        return max((r.cause_position for r in self._select(
            f"WHERE status = {self.placeholder} ORDER BY cause_position DESC LIMIT 1",
            (CertificateStatus.REVOKED.value,))), default=0)


def status_row(values: Any) -> StatusRow:
    """A row from its stored column values (either store)."""
    data = dict(zip(COLUMNS, values, strict=True))
    for key in ("not_before", "not_after", "changed_at"):
        if isinstance(data[key], str):
            data[key] = datetime.fromisoformat(data[key])
    if not isinstance(data["request_id"], UUID):
        data["request_id"] = UUID(str(data["request_id"]))
    return StatusRow(**data)


def _params(row: StatusRow) -> tuple[Any, ...]:
    return tuple(getattr(row, c) for c in COLUMNS)


class SQLiteStatusView(SQLiteTrackingRecorder, StatusView):
    """The embedded default: a table next to the tracking table in its own SQLite file."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                "CREATE TABLE IF NOT EXISTS revocation_status (serial TEXT PRIMARY KEY, "
                "user_id TEXT, module TEXT, request_id TEXT, not_before TEXT, not_after TEXT, "
                "status TEXT, reason TEXT, changed_at TEXT, changed_by TEXT, "
                "cause_position INTEGER)",
                "CREATE INDEX IF NOT EXISTS revocation_status_user_id "
                "ON revocation_status (user_id)"]

    @staticmethod
    def stored(row: StatusRow) -> tuple[Any, ...]:
        """``row`` as this store holds it (the column values it writes and reads back)."""
        return (row.serial, row.user_id, row.module, str(row.request_id),
                row.not_before.isoformat(), row.not_after.isoformat(), row.status, row.reason,
                row.changed_at.isoformat() if row.changed_at is not None else None,
                row.changed_by, row.cause_position)

    def save_rows(self, rows: list[StatusRow], tracking: Tracking | None) -> None:
        self.save_stored([self.stored(row) for row in rows], tracking)

    def save_stored(self, values: list[tuple[Any, ...]], tracking: Tracking | None) -> None:
        """Write rows given as ``stored`` values (and the tracking record) in one transaction."""
        with self.datastore.transaction(commit=True) as c:
            c.executemany(f"INSERT OR REPLACE INTO revocation_status VALUES ({','.join('?' * 11)})",  # noqa: S608
                          values)
            if tracking is not None:
                self._insert_tracking(c, tracking)

    def _select(self, where: str, args: tuple[Any, ...]) -> list[StatusRow]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {', '.join(COLUMNS)} FROM revocation_status {where}", args)  # noqa: S608
            return [status_row(tuple(r)) for r in c.fetchall()]

    def revoked_entries(self) -> list[RevokedEntry]:
        parse = datetime.fromisoformat
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT serial, coalesce(changed_at, not_before), coalesce(reason, "
                      "'unspecified') FROM revocation_status WHERE status = 'revoked'")
            rows = iter(c.fetchone, None)  # one row at a time: no list of a million rows
            return [RevokedEntry(serial, parse(at), reason) for serial, at, reason in rows]



class PostgresStatusView(PostgresTrackingRecorder, StatusView):
    """Production: the ``revocation_status`` table from migrations/0001 (yoyo)."""

    placeholder = "%s"

    def save_rows(self, rows: list[StatusRow], tracking: Tracking | None) -> None:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                f"INSERT INTO revocation_status ({', '.join(COLUMNS)}) "  # noqa: S608 - fixed names
                f"VALUES ({', '.join(['%s'] * 11)}) ON CONFLICT (serial) DO UPDATE SET {updates}",
                [_params(row) for row in rows])
            if tracking is not None:
                self._insert_tracking(curs, tracking)

    def _select(self, where: str, args: tuple[Any, ...]) -> list[StatusRow]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(f"SELECT {', '.join(COLUMNS)} FROM revocation_status {where}",  # noqa: S608
                         args, prepare=False)
            return [status_row(tuple(r.values())) for r in curs.fetchall()]

    def revoked_entries(self) -> list[RevokedEntry]:
        with self.datastore.transaction(commit=False) as curs, curs.connection.cursor(
                row_factory=tuple_row) as plain:
            plain.execute("SELECT serial, coalesce(changed_at, not_before), coalesce(reason, "
                          "'unspecified') FROM revocation_status WHERE status = 'revoked'")
            return [RevokedEntry(*row) for row in plain]



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


#: log events per transaction when the status view catches up
PAGE = 500


def catch_up(projection: Projection[Any], source: Any) -> int:
    """Feed the projection everything of ``source`` (the CA app) it has not seen; returns the count.

    The status view takes a page of events per transaction; other projections one by one.
    Another process on the same view (a running ``serve`` beside a portal process or a CLI
    command) may record a position first: its tracking then collides with ours, the view
    kept its rows, and we read on from where it got — nothing is applied twice.
    """
    count = 0
    paged = isinstance(projection, RevocationStatusProjection)
    while True:
        start = (projection.view.max_tracking_id(source.name) or 0) + 1
        position = start
        page: list[tuple[int, Any]] = []
        try:
            for position, event in read_log(source, topics=projection.topics, start=start):
                if not paged:
                    projection.process_event(event, Tracking(source.name, position))
                    count += 1
                    continue
                page.append((position, event))
                if len(page) == PAGE:
                    projection.process_page(page, source.name)  # type: ignore[attr-defined]
                    count, page = count + len(page), []
            if page:
                projection.process_page(page, source.name)  # type: ignore[attr-defined]
                count += len(page)
        except IntegrityError:
            if (projection.view.max_tracking_id(source.name) or 0) < position:
                raise  # not another catch-up ahead of us: a real constraint violation
        else:
            return count
