"""An index of what an application's log says, read once and then only what is new.

The portal asks three questions a plain aggregate does not answer: which request a serial
came from (ops), which OTPs are due to expire (R1), which sessions a user has open (ops).
Each is an index kept in memory from the events of a few topics: the first question reads
the log once, every later one only the events recorded since (by any process — the log is
the truth, so several portal processes each keep their own and agree)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from eventsourcing.utils import get_topic

from ca_core.eventmodel import read_log

T = TypeVar("T")


class LogIndex(Generic[T]):
    """``state`` built by ``add(state, event)`` from ``app``'s events of ``event_types``."""

    def __init__(self, app: Any, event_types: Sequence[type], state: T,
                 add: Callable[[T, Any], None]) -> None:
        self.app = app
        self.topics = [get_topic(t) for t in event_types]
        self.state = state
        self._add = add
        self.position = 0
        self._lock = threading.Lock()

    def current(self, prune: Callable[[T], None] | None = None) -> T:
        """The state, with every event recorded until now added (and then ``prune``d: what
        no question will ask about again, dropped while no other thread adds)."""
        with self._lock:
            for position, event in read_log(self.app, topics=self.topics,
                                             start=self.position + 1):
                self._add(self.state, event)
                self.position = position
            if prune is not None:
                prune(self.state)
            return self.state
