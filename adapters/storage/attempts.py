"""Attempt limits shared by every portal process: a sliding window per key (the client's
address) in a table of the portal's store — PostgreSQL, or for the embedded default a SQLite
file in the data directory (shared by the processes on that host).

A limit kept in one process's memory is no limit when three portal processes run behind a
load balancer: each would grant the full count."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from psycopg_pool import ConnectionPool

from adapters.storage.persistence import private_file


class Attempts(Protocol):
    """Counts attempts per key; ``allow`` is False once the limit is reached."""

    def allow(self, key: str) -> bool: ...


class PostgresAttempts:
    """``portal_attempts`` (migration 0004), a transaction per attempt, serialised per key
    by an advisory lock so that concurrent processes never both take the last attempt."""

    def __init__(self, url: str, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.pool = ConnectionPool(url, min_size=1, max_size=4, open=True,
                                   kwargs={"autocommit": False})

    def allow(self, key: str) -> bool:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
            conn.execute("DELETE FROM portal_attempts WHERE key = %s AND "
                         "at < now() - make_interval(secs => %s)", (key, self.window))
            row = conn.execute("SELECT count(*) FROM portal_attempts WHERE key = %s",
                               (key,)).fetchone()
            if row is not None and row[0] >= self.limit:
                return False
            conn.execute("INSERT INTO portal_attempts (key) VALUES (%s)", (key,))
            return True

    def close(self) -> None:
        self.pool.close()


class SQLiteAttempts:
    """The same in ``<data_dir>/portal-attempts.sqlite`` (0600); BEGIN IMMEDIATE serialises
    the processes."""

    def __init__(self, path: Path, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        private_file(path)
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None,
                                  check_same_thread=False)
        self.lock = threading.Lock()
        with self.lock:
            self.db.execute("CREATE TABLE IF NOT EXISTS portal_attempts (key TEXT NOT NULL, "
                            "at REAL NOT NULL)")
            self.db.execute("CREATE INDEX IF NOT EXISTS portal_attempts_key_at ON "
                            "portal_attempts (key, at)")

    def allow(self, key: str) -> bool:
        now = time.time()
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("DELETE FROM portal_attempts WHERE key = ? AND at < ?",
                                (key, now - self.window))
                (count,) = self.db.execute("SELECT count(*) FROM portal_attempts WHERE key = ?",
                                           (key,)).fetchone()
                allowed = count < self.limit
                if allowed:
                    self.db.execute("INSERT INTO portal_attempts (key, at) VALUES (?, ?)",
                                    (key, now))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return bool(allowed)

    def close(self) -> None:
        self.db.close()


def shared_attempts(database_url: str, data_dir: Path, limit: int,
                    window: float) -> PostgresAttempts | SQLiteAttempts:
    if database_url:
        return PostgresAttempts(database_url, limit, window)
    return SQLiteAttempts(data_dir / "portal-attempts.sqlite", limit, window)
