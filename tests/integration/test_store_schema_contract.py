"""The raw SQL in adapters/storage (log reader, bulk reads, the array insert) names
eventsourcing's own tables and columns. This is its contract: on both stores, the tables the
pinned eventsourcing creates have every column that SQL reads or writes, with the types it
assumes. A library upgrade that renames or retypes one fails here, not in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import make_system

#: columns our statements name, per store (SQLite reads ``rowid``, its implicit key)
EVENTS_SQLITE = {"originator_id", "originator_version", "topic", "state"}
EVENTS_POSTGRES = {"notification_id": "bigint", "originator_id": "uuid",
                   "originator_version": "bigint", "topic": "text", "state": "bytea"}


def _columns(recorder: Any) -> dict[str, str]:
    table = recorder.events_table_name
    with recorder.datastore.transaction(commit=False) as cursor:
        if hasattr(recorder.datastore, "schema"):  # PostgreSQL
            cursor.execute("SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_schema = %s AND table_name = %s",
                           (recorder.datastore.schema or "public", table))
            return {row["column_name"]: row["data_type"] for row in cursor.fetchall()}
        cursor.execute(f"PRAGMA table_info({table})")
        return {row[1]: str(row[2]).lower() for row in cursor.fetchall()}


def test_raw_sql_matches_the_event_tables(tmp_path: Path, database_url: str) -> None:
    system = make_system(tmp_path / "data", database_url=database_url)
    try:
        for app in (system.ca, system.portal):
            columns = _columns(app.recorder)
            if database_url:
                assert {k: columns.get(k) for k in EVENTS_POSTGRES} == EVENTS_POSTGRES, app.name
            else:
                assert EVENTS_SQLITE <= set(columns), (app.name, columns)
    finally:
        system.close()
