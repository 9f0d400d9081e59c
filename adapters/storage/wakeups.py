"""Waking a follower when a store changes, instead of at its next poll (PostgreSQL LISTEN).

eventsourcing's PostgreSQL recorder sends ``NOTIFY <events table>`` with every insert, and
the OCSP response store sends ``NOTIFY ocsp_responses`` with every re-signed answer
(projections/ocsp.py). A follower waits on its channel for at most its poll interval: a change
wakes it at once, and the poll interval stays the bound when a notification is lost (a
dropped connection is opened again at the next wait). SQLite has no such thing: ``wait``
sleeps for the interval, as the followers did before.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

#: the channel the OCSP response store notifies when it saved re-signed answers
OCSP_CHANNEL = "ocsp_responses"


class Wakeups:
    """``wait(timeout)``: True as soon as the channel was notified, False after ``timeout``."""

    def __init__(self, database_url: str, channel: str,
                 stop: threading.Event | None = None) -> None:
        self.database_url = database_url
        self.channel = channel
        self.stop = stop or threading.Event()
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None

    def _listening(self) -> psycopg.Connection[tuple[object, ...]] | None:
        if self._connection is None or self._connection.closed:
            try:
                connection = psycopg.connect(self.database_url, autocommit=True)
                connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            except psycopg.Error as exc:
                log.warning("cannot listen on %s (%s); polling instead", self.channel,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                return None
            self._connection = connection
        return self._connection

    def wait(self, timeout: float) -> bool:
        if not self.database_url:
            self.stop.wait(timeout)
            return False
        started = time.monotonic()
        connection = self._listening()
        if connection is None:
            self.stop.wait(timeout)
            return False
        try:
            woken = False
            for _ in connection.notifies(timeout=timeout, stop_after=1):
                woken = True
            if woken:  # drain what else came meanwhile: one wake-up for a burst
                for _ in connection.notifies(timeout=0):
                    pass
        except psycopg.Error:
            self.close()
            self.stop.wait(max(0.0, timeout - (time.monotonic() - started)))
            return False
        return woken

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None
