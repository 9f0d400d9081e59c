"""The revocation-status view in SQL: SQLite (the embedded default: its own file, the table
made here) and PostgreSQL (the table from migrations/0001, yoyo). The port, the rows and the
projection are projections/status.py; the columns are ``COLUMNS`` there, and
tests/integration/test_store_schema_contract.py holds this DDL and the migration to them."""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg.rows import tuple_row

from adapters.storage.sqlite_rows import SQLiteRows
from ca_core.certificate import CertificateStatus
from ca_core.crl import RevokedEntry
from projections.status import COLUMNS, StatusRow, StatusView, status_row

TABLE = "revocation_status"


class _SqlStatusView(StatusView):
    """The queries both stores share, in their driver's placeholder."""

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

    def revoked_position(self) -> int:
        return max((r.cause_position for r in self._select(
            f"WHERE status = {self.placeholder} ORDER BY cause_position DESC LIMIT 1",
            (CertificateStatus.REVOKED.value,))), default=0)


class SQLiteStatusView(SQLiteRows, _SqlStatusView):
    """The embedded default: a table next to the tracking table in its own SQLite file."""

    table, width = TABLE, len(COLUMNS)

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


class PostgresStatusView(PostgresTrackingRecorder, _SqlStatusView):
    """Production: the ``revocation_status`` table from migrations/0001 (yoyo)."""

    placeholder = "%s"

    def save_rows(self, rows: list[StatusRow], tracking: Tracking | None) -> None:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                f"INSERT INTO revocation_status ({', '.join(COLUMNS)}) "  # noqa: S608 - fixed names
                f"VALUES ({', '.join(['%s'] * 11)}) ON CONFLICT (serial) DO UPDATE SET {updates}",
                [tuple(getattr(row, c) for c in COLUMNS) for row in rows])
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
