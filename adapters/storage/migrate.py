"""Applies migrations/ to a PostgreSQL database with yoyo-migrations."""

from __future__ import annotations

from pathlib import Path

from yoyo import get_backend, read_migrations

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def apply_migrations(database_url: str) -> int:
    """Apply what is missing; returns how many migrations ran. SQLite needs none."""
    if not database_url:
        return 0
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
        "postgres://", "postgresql+psycopg://", 1)
    backend = get_backend(url)
    if not MIGRATIONS.is_dir():  # read_migrations would quietly find none
        raise FileNotFoundError(f"no migrations directory at {MIGRATIONS}")
    migrations = read_migrations(str(MIGRATIONS))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return len(pending)
