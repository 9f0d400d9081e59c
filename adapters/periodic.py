"""The loop every long-running job is: until stopped, do a step, wait, and on a failure say
so and try again — the one place it is written (issue 27).

A failure speaks through ``FailureStreak``: the first failure of a streak with its
traceback, then one line every ``every`` seconds, and one line when it recovers — a minute's
outage of the broker or the store is a few lines, not sixty tracebacks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class FailureStreak:
    """What a job says about a run of failures."""

    def __init__(self, log: logging.Logger, what: str, every: float = 30.0) -> None:
        self.log, self.what, self.every = log, what, every
        self.since: float | None = None
        self.count = 0
        self._said = 0.0

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self.count += 1
        if self.since is None:
            self.since = self._said = now
            self.log.error("%s failed; retrying", self.what, exc_info=exc)
        elif now - self._said >= self.every:
            self._said = now
            self.log.warning("%s still failing after %.0f s (%d tries; %s: %s); retrying",
                             self.what, now - self.since, self.count, type(exc).__name__,
                             str(exc)[:200])

    def succeeded(self) -> None:
        if self.since is not None:
            self.log.warning("%s works again after %.0f s", self.what,
                             time.monotonic() - self.since)
            self.since, self.count = None, 0


def run_periodically(what: str, step: Callable[[], float | None], stop: threading.Event,
                     log: logging.Logger, *, interval: float = 0.0, first_wait: float = 0.0,
                     after_failure: float | None = None,
                     on_failure: Callable[[], None] | None = None,
                     going: Callable[[], bool] | None = None) -> None:
    """Until ``stop`` is set (or ``going()`` says no): ``step()``, then wait the seconds it
    returned (None: ``interval``). ``first_wait``: before the first step. A failure is told
    through a ``FailureStreak``, then ``on_failure()`` runs (forget what may be stale) and
    the next try comes after ``after_failure`` seconds (default: ``interval``)."""
    streak = FailureStreak(log, what)
    if first_wait and stop.wait(first_wait):
        return
    while not stop.is_set() and (going is None or going()):
        try:
            wait = step()
            streak.succeeded()
        except Exception as exc:  # noqa: BLE001 - a broker, a store, a record away: try again
            streak.failed(exc)
            if on_failure is not None:
                try:
                    on_failure()
                except Exception:  # noqa: BLE001, S110 - the next step says what is wrong
                    pass
            wait = interval if after_failure is None else after_failure
        if wait is None:
            wait = interval
        if wait > 0:
            stop.wait(wait)
