"""The injected clock: every rule that depends on time asks a Clock, never ``datetime.now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of the current time (timezone-aware, UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, the demo's expiry chapter)."""

    def __init__(self, start: datetime | None = None, step: timedelta | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._step = step

    def now(self) -> datetime:
        """The current time; with a ``step``, each reading moves the clock on (causal order)."""
        current = self._now
        if self._step:
            self._now += self._step
        return current

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)
