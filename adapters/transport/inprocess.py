"""The embedded default transport: the CA follows the portal's log and the portal follows the CA's.

Each delivery is recorded with eventsourcing tracking (the source application's
name and notification id) in the same transaction as the events it causes, so a
restart resumes exactly where it stopped. Another process on the same stores (a
running ``serve`` beside a CLI command) may deliver the same page first: the page
is then skipped; any other conflict is retried from positions read again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from eventsourcing.persistence import IntegrityError, Tracking

from ca_core.conflicts import on_conflict
from ca_core.eventmodel import DomainEvent
from ca_core.messages import (
    CA_MESSAGE_TOPICS,
    PORTAL_MESSAGE_TOPICS,
    Message,
    ca_message,
    portal_message,
)
from ca_core.processing import MessageDrivenApplication


class InProcessTransport:
    """Delivers messages between two applications in one process, synchronously on ``pump()``."""

    def __init__(self, portal: MessageDrivenApplication, ca: MessageDrivenApplication,
                 page: int = 500) -> None:
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
        source: MessageDrivenApplication,
        target: MessageDrivenApplication,
        topics: Sequence[str],
        to_message: Callable[[DomainEvent], Message | None],
    ) -> int:
        """Deliver one page of the source's log as one batch, tracked by its last position."""
        retrying = on_conflict()  # another process on the same stores recorded first
        while True:
            delivered = retrying(self._forward_once, source, target, topics, to_message)
            if delivered is not None:
                return delivered
            # another process delivered that page first; the positions moved on: read again

    def _forward_once(
        self,
        source: MessageDrivenApplication,
        target: MessageDrivenApplication,
        topics: Sequence[str],
        to_message: Callable[[DomainEvent], Message | None],
    ) -> int | None:
        start = (target.recorder.max_tracking_id(source.name) or 0) + 1
        notifications = source.recorder.select_notifications(start, self.page, topics=topics)
        if not notifications:
            return 0
        messages = [m for n in notifications
                    if (m := to_message(cast(DomainEvent, source.mapper.to_domain_event(n))))]
        last = notifications[-1].id
        try:
            target.process_batch(messages, Tracking(source.name, last))
        except IntegrityError:
            if (target.recorder.max_tracking_id(source.name) or 0) >= last:
                return None  # another process delivered this page first: nothing to redo
            raise
        return len(messages)
