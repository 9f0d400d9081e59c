"""A lease one process holds at a time and loses when it dies: who runs a role's singletons.

Several ``serve --role ca`` workers share the CA inbox through Kafka's consumer group, but
the relay (one ordered publication of the log), the expiry timer and CRL/OCSP publishing
must run in exactly one of them. The worker holding the lease runs them; when it dies, the
lease goes with it and the next worker to look takes it over.

- PostgreSQL: ``pg_try_advisory_lock`` on a connection of its own — the server drops the
  lock when that connection ends (process killed, host gone: after TCP keepalive).
- SQLite (one machine): ``flock`` on ``<data_dir>/<name>.lease`` — the kernel drops it when
  the holding process exits.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

#: how often a worker without the lease tries to take it (and the holder checks it still has it)
LEASE_CHECK_SECONDS = 2.0


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key from the lease's name (stable across processes)."""
    digest = hashlib.blake2b(f"partner-ca lease {name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Lease:
    """``acquire()`` without waiting; ``holds()`` re-checks; ``release()`` gives it up."""

    def __init__(self, name: str, database_url: str, data_dir: Path) -> None:
        self.name = name
        self.database_url = database_url
        self.path = data_dir / f"{name}.lease"
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self.database_url:
            return self._acquire_advisory()
        return self._acquire_flock()

    def _acquire_advisory(self) -> bool:
        try:
            connection = psycopg.connect(self.database_url, autocommit=True,
                                         keepalives=1, keepalives_idle=5,
                                         keepalives_interval=2, keepalives_count=3)
        except psycopg.Error as exc:
            log.warning("lease %s: database unreachable (%s)", self.name,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return False
        row = connection.execute("SELECT pg_try_advisory_lock(%s)",
                                 (_lock_key(self.name),)).fetchone()
        if row is not None and row[0]:
            self._connection = connection
            return True
        connection.close()
        return False

    def _acquire_flock(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holds(self) -> bool:
        """Whether this process still has the lease (PostgreSQL: its connection lives)."""
        if self._fd is not None:
            return True
        if self._connection is None:
            return False
        try:
            self._connection.execute("SELECT 1")
        except psycopg.Error:
            self.release()
            return False
        return True

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()  # the server drops the lock with the session
            finally:
                self._connection = None
        if self._fd is not None:
            os.close(self._fd)  # the kernel drops the flock with the descriptor
            self._fd = None


def run_while_holding(lease: Lease, components: Sequence[tuple[str, Callable[[threading.Event],
                      None]]], stop: threading.Event,
                      on_change: Callable[[bool], None] | None = None) -> None:
    """Until ``stop``: take the lease when free, run ``components`` (each a thread given an
    event that is set when the lease is lost or ``stop`` is), and start over if it is lost."""
    while not stop.is_set():
        if not lease.acquire():
            stop.wait(LEASE_CHECK_SECONDS)
            continue
        log.info("lease %s taken: running %s", lease.name, ", ".join(n for n, _ in components))
        if on_change is not None:
            on_change(True)
        lost = threading.Event()
        threads = [threading.Thread(target=run, args=(lost,), name=name, daemon=True)
                   for name, run in components]
        for thread in threads:
            thread.start()
        while not stop.wait(LEASE_CHECK_SECONDS):
            if not lease.holds():
                log.error("lease %s lost: stopping %s", lease.name,
                          ", ".join(n for n, _ in components))
                break
        lost.set()
        for thread in threads:
            thread.join(timeout=10)
        lease.release()
        if on_change is not None:
            on_change(False)
