"""Migrations cannot wedge a restart (issue 19, item 5): the migration lock is a PostgreSQL
advisory lock that dies with its holder, and a lock row yoyo left behind is cleared."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg
from yoyo import get_backend

from adapters.storage import migrate
from adapters.storage.migrate import apply_migrations, migration_lock

HOLDER = """
import sys, time
from adapters.storage.migrate import migration_lock
with migration_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_migrator_killed_while_holding_the_lock_does_not_wedge_the_next(
        postgres_url: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, postgres_url],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        holder.kill()  # SIGKILL while it holds the lock
        holder.wait(timeout=10)
        started = time.monotonic()
        apply_migrations(postgres_url)
        assert time.monotonic() - started < 5  # yoyo's row lock would wait 10 s, then fail
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_lock_row_left_by_a_killed_yoyo_is_cleared(postgres_url: str) -> None:
    apply_migrations(postgres_url)
    backend = get_backend(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with backend.transaction():  # what a SIGKILL inside yoyo's own lock() leaves behind
        backend.execute(f"INSERT INTO {backend.lock_table_quoted} (locked, ctime, pid) "
                        "VALUES (1, now(), 999999)")
    started = time.monotonic()
    apply_migrations(postgres_url)
    assert time.monotonic() - started < 5
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT count(*) FROM yoyo_lock").fetchone() == (0,)


def test_a_living_holder_is_waited_for(postgres_url: str) -> None:
    """The lock still excludes: while one process migrates, another waits."""
    with migration_lock(postgres_url):
        waiter = subprocess.Popen([sys.executable, "-c", HOLDER.replace("600", "0"),
                                   postgres_url], stdout=subprocess.PIPE, text=True)
        # evidence, not a pause: the server shows the waiter's advisory lock not granted
        deadline = time.monotonic() + 30
        with psycopg.connect(postgres_url, autocommit=True) as watcher:
            while watcher.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                  "AND NOT granted").fetchone() == (0,):
                assert time.monotonic() < deadline, "the waiter never asked for the lock"
                assert waiter.poll() is None, "the waiter got the lock we hold"
                time.sleep(0.05)
        assert waiter.poll() is None  # still waiting for us
    assert waiter.stdout is not None and waiter.stdout.readline().strip() == "held"
    waiter.wait(timeout=10)


def test_yoyo_still_locks_through_the_method_we_replace(postgres_url: str) -> None:
    """The marked place in adapters/storage/migrate.py: yoyo's ``lock()`` (which its internal
    schema upgrade calls) writes a row; replaced on the instance, it writes none."""
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)

    def rows_while_locked(backend: object) -> int:
        with backend.lock():  # type: ignore[attr-defined]
            with psycopg.connect(postgres_url) as connection:
                found = connection.execute("SELECT count(*) FROM yoyo_lock").fetchone()
        return int(found[0]) if found else -1

    assert rows_while_locked(get_backend(url)) == 1  # yoyo as it is today
    replaced = get_backend(url)
    migrate._without_yoyo_lock(replaced)
    assert rows_while_locked(replaced) == 0
