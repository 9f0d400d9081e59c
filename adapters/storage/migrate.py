"""Applies migrations/ to a PostgreSQL database with yoyo-migrations.

yoyo's own lock is a row in ``yoyo_lock``: a migrator killed while holding it (SIGKILL during a
role's start-up) leaves the row behind, and every later start waits 10 s and fails with
``LockTimeout`` until someone runs ``yoyo break-lock``. Here the lock is a PostgreSQL
advisory lock on a connection of its own, which dies with its holder; yoyo's ``lock()`` is
replaced on the backend instance for the duration (the one marked place where this module
reaches into yoyo; ``tests/integration/test_migration_lock.py`` fails if yoyo stops calling it),
and rows a killed yoyo lock left behind are cleared.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import psycopg
from yoyo import get_backend, read_migrations

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
#: pg_advisory_lock key of the migration lock (any constant shared by all our processes)
MIGRATION_LOCK = 0x7061_7274_6E65_7263  # "partnerc"


@contextmanager
def migration_lock(database_url: str) -> Iterator[None]:
    """Hold the migration lock (waits for a living holder; a dead one's is gone with it)."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def apply_migrations(database_url: str) -> int:
    """Apply what is missing; returns how many migrations ran. SQLite needs none."""
    if not database_url:
        return 0
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
        "postgres://", "postgresql+psycopg://", 1)
    if not MIGRATIONS.is_dir():  # read_migrations would quietly find none
        raise FileNotFoundError(f"no migrations directory at {MIGRATIONS}")
    migrations = read_migrations(str(MIGRATIONS))
    with migration_lock(database_url):
        backend = get_backend(url)
        _without_yoyo_lock(backend)
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return len(pending)


def _without_yoyo_lock(backend: Any) -> None:
    """MARKED: yoyo's lock row replaced by the advisory lock held around us."""
    backend.lock = lambda timeout=10: nullcontext()
    backend.break_lock()  # rows a killed yoyo lock left behind (before this fix)
