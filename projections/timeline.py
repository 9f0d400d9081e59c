"""One timeline across the Portal's and the CA's event logs (the demo's output, the auditor's first view)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from ca_core.certificate import SigningRequest
from ca_core.eventmodel import DomainEvent, all_events
from ca_core.partner import PartnerAccount


@dataclass(frozen=True)
class TimelineEntry:
    """One domain event with where it is stored."""

    store: str
    position: int
    event: DomainEvent

    @property
    def type(self) -> str:
        return type(self.event).__name__

    @property
    def aggregate(self) -> str:
        return type(self.event).__qualname__.split(".")[0]

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "aggregate": self.aggregate,
            "aggregate_id": str(self.event.originator_id),
            "version": self.event.originator_version,
            "timestamp": self.event.timestamp.isoformat(),
            "store": self.store,
            "position": self.position,
            **self.event.public_fields(),
        }


def timeline(*apps: Application[UUID]) -> list[TimelineEntry]:
    """Every event of the given applications, merged by timestamp (each log keeps its order)."""
    logs = [
        [TimelineEntry(app.name, pos, e) for pos, e in all_events(app)] for app in apps
    ]
    return list(heapq.merge(*logs, key=lambda entry: entry.event.timestamp))


def history(entries: list[TimelineEntry], user_id: str | None = None,
            serial: str | None = None) -> list[TimelineEntry]:
    """The part of a timeline about one user or one certificate (auditors).

    Events carry a user or serial field, or belong to an aggregate that one such event
    tied to the user or certificate (its OTPs, requests, signing requests, key records)."""
    ids: set[UUID] = set()
    wanted_requests: set[UUID] = set()
    for entry in entries:
        fields = entry.event.public_fields()
        if (user_id is not None and fields.get("user_id") == user_id) or (
                serial is not None and fields.get("serial") == serial):
            ids.add(entry.event.originator_id)
            for key in ("request_id", "otp_id"):
                if fields.get(key):  # public fields give ids as text
                    wanted_requests.add(UUID(str(fields[key])))

    if user_id is not None:
        ids.add(PartnerAccount.id_for(user_id))
    ids |= wanted_requests | {SigningRequest.id_for(r) for r in wanted_requests}
    return [e for e in entries if e.event.originator_id in ids]
