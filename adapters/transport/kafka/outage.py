"""How a relay or an inbox speaks while the broker is away: the first failure of a streak
with its traceback, then one line every ``every`` seconds, and one line when it recovers —
a minute's outage is a few lines, not sixty tracebacks."""

from __future__ import annotations

import logging
import time


class FailureStreak:
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
