"""The embedded default transport: the CA follows the portal's log and the portal follows the CA's.

Each delivery is recorded with eventsourcing tracking (the source application's
name and notification id) in the same transaction as the events it causes, so a
restart resumes exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.projection import EventSourcedProjection

from ca_core.eventmodel import DomainEvent, read_log
from ca_core.messages import (
    CA_MESSAGE_TOPICS,
    PORTAL_MESSAGE_TOPICS,
    Message,
    ca_message,
    portal_message,
)

Follower = EventSourcedProjection[UUID]


class InProcessTransport:
    """Delivers messages between two applications in one process, synchronously on ``pump()``."""

    def __init__(self, portal: Follower, ca: Follower, page: int = 500) -> None:
        self.portal = portal
        self.ca = ca
        self.page = page

    def pump(self) -> int:
        delivered = 0
        while True:
            n = self._forward(self.portal, self.ca, PORTAL_MESSAGE_TOPICS, portal_message)
            n += self._forward(self.ca, self.portal, CA_MESSAGE_TOPICS, ca_message)
            if n == 0:
                return delivered
            delivered += n

    def _forward(
        self,
        source: Follower,
        target: Follower,
        topics: Sequence[str],
        to_message: Callable[[DomainEvent], Message | None],
    ) -> int:
        start = (target.recorder.max_tracking_id(source.name) or 0) + 1
        count = 0
        for position, event in read_log(source, topics=topics, start=start, page=self.page):
            message = to_message(event)
            if message is not None:
                target.process_event(cast(Any, message), Tracking(source.name, position))
                count += 1
        return count
