"""R11's index: issued certificates by notAfter, so recording expiries costs O(new + due).

The CA extends it from its log on each ``expire_due`` (issued certificates go in; revoked or
expired ones are marked ended) and takes the due ones off the top of a heap."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from ca_core.certificate import Certificate

#: the Certificate events that change what is due
EXPIRY_EVENTS = (Certificate.CertificateIssued, Certificate.CertificateRevoked,
                 Certificate.CertificateExpired)


class ExpiryIndex:
    """(notAfter, serial, certificate id) of issued certificates and the log position read."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next ``extend`` reads the log from its start."""
        self._heap: list[tuple[datetime, str, UUID]] = []
        self._ended: set[UUID] = set()  # revoked or expired, not yet taken from the heap
        self.position = 0

    def extend(self, events: Iterable[tuple[int, Any]]) -> None:
        """Take in the log's Certificate events after ``position``, as (position, event)."""
        for position, event in events:
            if isinstance(event, Certificate.CertificateIssued):
                heapq.heappush(self._heap, (event.not_after, event.serial, event.originator_id))
            else:  # revoked or expired: nothing left to record
                self._ended.add(event.originator_id)
            self.position = position

    def due(self, now: datetime) -> Iterator[UUID]:
        """The ids of certificates whose notAfter is before ``now`` and that have not ended,
        each taken off the index as it is yielded."""
        while self._heap and self._heap[0][0] < now:
            _, _, certificate_id = heapq.heappop(self._heap)
            if certificate_id in self._ended:
                self._ended.discard(certificate_id)
                continue
            yield certificate_id


class LastExpiries:
    """The latest notAfter of the certificates each issuing CA signed (when it may retire),
    from the log's CertificateIssued events after ``position``."""

    def __init__(self) -> None:
        self.last_expiry: dict[int, datetime] = {}
        self.position = 0

    def extend(self, events: Iterable[tuple[int, Any]]) -> None:
        for position, event in events:
            if isinstance(event, Certificate.CertificateIssued):
                generation = event.issuer_generation
                known = self.last_expiry.get(generation)
                if known is None or event.not_after > known:
                    self.last_expiry[generation] = event.not_after
            self.position = position
