"""A SQLite view store whose rows are replaced whole, with their tracking record in the same
transaction (the status view and the OCSP answers, embedded)."""

from __future__ import annotations

from typing import Any, ClassVar

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteTrackingRecorder


class SQLiteRows(SQLiteTrackingRecorder):
    #: the table and how many columns a row has (set by each store)
    table: ClassVar[str]
    width: ClassVar[int]

    def save_stored(self, values: list[tuple[Any, ...]], tracking: Tracking | None) -> None:
        """Write rows given as the column values this store holds (times as ISO 8601 text),
        and the tracking record when given, in one transaction."""
        with self.datastore.transaction(commit=True) as c:
            c.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES "  # noqa: S608
                          f"({','.join('?' * self.width)})", values)
            if tracking is not None:
                self._insert_tracking(c, tracking)
