"""The pre-signed OCSP responses in SQL: SQLite (its own file, the table made here) and
PostgreSQL (migrations/0002, yoyo; a NOTIFY wakes the OCSP workers at each commit). The
port, the rows and the projection are projections/ocsp.py; the columns are ``COLUMNS``
there, held to this DDL and the migration by tests/integration/test_store_schema_contract.py."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder

from adapters.storage.sqlite_rows import SQLiteRows
from projections.ocsp import CA_PREFIX, COLUMNS, OcspStore, StoredResponse

TABLE = "ocsp_responses"


def _moment(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _row(values: Any) -> StoredResponse:
    data = dict(zip(COLUMNS, values, strict=True))
    for key in ("revoked_at", "this_update", "next_update"):
        if isinstance(data[key], str):
            data[key] = datetime.fromisoformat(data[key])
    for key in ("sha1_der", "sha256_der"):
        data[key] = bytes(data[key])
    return StoredResponse(**data)


class _SqlOcspStore(OcspStore):
    """The queries both stores share, in their driver's placeholder and time format."""

    placeholder = "?"

    @abstractmethod
    def _select(self, where: str, args: tuple[Any, ...]) -> list[StoredResponse]: ...

    @abstractmethod
    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def _execute(self, sql: str, args: tuple[Any, ...]) -> None: ...

    def _time(self, value: datetime) -> Any:
        return value

    def get(self, serial: str) -> StoredResponse | None:
        found = self._select(f"WHERE serial = {self.placeholder}", (serial,))
        return found[0] if found else None

    def due(self, signed_before: datetime, signer_serials: str | Sequence[str],
            limit: int) -> list[StoredResponse]:
        p = self.placeholder
        current = (signer_serials,) if isinstance(signer_serials, str) else tuple(signer_serials)
        return self._select(f"WHERE (this_update < {p} OR signer_serial NOT IN "
                            f"({', '.join([p] * len(current))})) "
                            f"AND serial NOT LIKE {p} ORDER BY this_update LIMIT {int(limit)}",
                            (self._time(signed_before), *current, CA_PREFIX + "%"))

    def drop_signed_by(self, signer_serials: Sequence[str]) -> None:
        if signer_serials:
            self._execute("DELETE FROM ocsp_responses WHERE signer_serial IN "  # noqa: S608
                          f"({', '.join([self.placeholder] * len(signer_serials))})",
                          tuple(signer_serials))

    def rows(self) -> list[StoredResponse]:
        return self._select(f"WHERE serial NOT LIKE {self.placeholder} ORDER BY serial",
                            (CA_PREFIX + "%",))

    def partition(self, part: int, parts: int) -> list[StoredResponse]:
        digits = [d for i, d in enumerate("0123456789ABCDEF") if i % parts == part]
        p = self.placeholder
        return self._select(f"WHERE substr(serial, length(serial), 1) IN "
                            f"({', '.join([p] * len(digits))})", tuple(digits))

    def newest_change(self) -> datetime | None:
        found = self._query("SELECT max(this_update) FROM ocsp_responses", ())
        return _moment(found[0][0]) if found and found[0][0] is not None else None

    def oldest_signing(self) -> datetime | None:
        found = self._query("SELECT min(this_update) FROM ocsp_responses", ())
        return _moment(found[0][0]) if found and found[0][0] is not None else None

    def changed_since(self, moment: datetime | None) -> list[tuple[str, datetime]]:
        if moment is None:
            found = self._query("SELECT serial, this_update FROM ocsp_responses", ())
        else:
            found = self._query("SELECT serial, this_update FROM ocsp_responses "  # noqa: S608
                                f"WHERE this_update > {self.placeholder}", (self._time(moment),))
        return [(serial, _moment(at)) for serial, at in found]


class SQLiteOcspStore(SQLiteRows, _SqlOcspStore):
    table, width = TABLE, len(COLUMNS)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                "CREATE TABLE IF NOT EXISTS ocsp_responses (serial TEXT PRIMARY KEY, status TEXT, "
                "reason TEXT, revoked_at TEXT, sha1_der BLOB, sha256_der BLOB, this_update TEXT, "
                "next_update TEXT, signer_serial TEXT, cause_position INTEGER)",
                "CREATE INDEX IF NOT EXISTS ocsp_responses_this_update "
                "ON ocsp_responses (this_update)"]

    def _time(self, value: datetime) -> Any:
        return value.isoformat()

    def save(self, rows: list[StoredResponse], tracking: Tracking | None) -> None:
        times: dict[datetime, str] = {}  # the rows of one save mostly share their signing times

        def text(moment: datetime) -> str:
            found = times.get(moment)
            if found is None:
                found = times[moment] = moment.isoformat()
            return found

        self.save_stored([(r.serial, r.status, r.reason,
                           r.revoked_at.isoformat() if r.revoked_at is not None else None,
                           r.sha1_der, r.sha256_der, text(r.this_update), text(r.next_update),
                           r.signer_serial, r.cause_position) for r in rows], tracking)

    def _select(self, where: str, args: tuple[Any, ...]) -> list[StoredResponse]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {', '.join(COLUMNS)} FROM ocsp_responses {where}", args)  # noqa: S608
            return [_row(tuple(r)) for r in c.fetchall()]

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, args)
            return [tuple(r) for r in c.fetchall()]

    def _execute(self, sql: str, args: tuple[Any, ...]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(sql, args)


class PostgresOcspStore(PostgresTrackingRecorder, _SqlOcspStore):
    """The ``ocsp_responses`` table from migrations/0002 (yoyo)."""

    placeholder = "%s"

    def save(self, rows: list[StoredResponse], tracking: Tracking | None) -> None:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
        with self.datastore.transaction(commit=True) as curs:
            if rows:
                curs.executemany(
                    f"INSERT INTO ocsp_responses ({', '.join(COLUMNS)}) "  # noqa: S608 - fixed names
                    f"VALUES ({', '.join(['%s'] * 10)}) ON CONFLICT (serial) DO UPDATE SET {updates} "
                    "WHERE ocsp_responses.cause_position <= EXCLUDED.cause_position",
                    [tuple(getattr(row, k) for k in COLUMNS) for row in rows])
                curs.execute("NOTIFY ocsp_responses")  # wakes the OCSP workers (at commit)
            if tracking is not None:
                self._insert_tracking(curs, tracking)

    def _select(self, where: str, args: tuple[Any, ...]) -> list[StoredResponse]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(f"SELECT {', '.join(COLUMNS)} FROM ocsp_responses {where}",  # noqa: S608
                         args, prepare=False)
            return [_row(tuple(r.values())) for r in curs.fetchall()]

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, args, prepare=False)
            return [tuple(r.values()) for r in curs.fetchall()]

    def _execute(self, sql: str, args: tuple[Any, ...]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(sql, args, prepare=False)
