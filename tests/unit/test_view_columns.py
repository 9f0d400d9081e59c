"""Each read model's columns are said once (``COLUMNS`` beside its port in projections/), and
its two schemas — the SQLite DDL in adapters/storage/sql_*.py and the PostgreSQL migration
in migrations/ — are held to them here: a column added to one and not the others fails."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.storage import sql_mail, sql_ocsp, sql_status
from adapters.storage.persistence import mail_outbox, ocsp_store, status_view
from projections.notifications import COLUMNS as MAIL_COLUMNS
from projections.ocsp import COLUMNS as OCSP_COLUMNS
from projections.status import COLUMNS as STATUS_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
VIEWS = [(status_view, sql_status.TABLE, STATUS_COLUMNS),
         (ocsp_store, sql_ocsp.TABLE, OCSP_COLUMNS),
         (mail_outbox, sql_mail.TABLE, MAIL_COLUMNS)]


def _migrated(table: str) -> tuple[str, ...]:
    """The columns the migration creates the table with, in order."""
    for path in sorted((ROOT / "migrations").glob("0*.sql")):
        if path.name.endswith(".rollback.sql"):
            continue
        found = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\);", path.read_text(),
                          re.DOTALL)
        if found:
            return tuple(line.split()[0] for line in found.group(1).split(",\n")
                         if line.strip() and not line.strip().upper().startswith(
                             ("PRIMARY", "UNIQUE", "CONSTRAINT")))
    raise AssertionError(f"no migration creates {table}")


def _sqlite(opened: Any, table: str) -> tuple[str, ...]:
    """The columns the SQLite store's own DDL created, in order."""
    with opened.datastore.transaction(commit=False) as cursor:
        cursor.execute(f"PRAGMA table_info({table})")
        return tuple(row[1] for row in cursor.fetchall())


@pytest.mark.parametrize(("open_store", "table", "columns"), VIEWS,
                         ids=[table for _, table, _ in VIEWS])
def test_one_list_of_columns_two_schemas(tmp_path: Path, open_store: Callable[[str, Path], Any],
                                         table: str, columns: tuple[str, ...]) -> None:
    assert _migrated(table) == columns
    assert _sqlite(open_store("", tmp_path), table) == columns
