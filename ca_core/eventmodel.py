"""Pydantic domain events for eventsourcing 9.5 (the library's pydantic-aggregate pattern).

Version 9.5 ships no ``eventsourcing.pydantic`` module, so the bases live here:
immutable pydantic events, an aggregate base with UUID ids, a mapper that stores
``model_dump(mode="json")`` and an orjson transcoder.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, cast
from uuid import UUID, uuid4

import orjson
from eventsourcing.application import Application
from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    DomainEventProtocol,
)
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import BaseModel, ConfigDict


class DomainEvent(BaseModel):
    """Base of every stored event: immutable, validated, JSON-serialisable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    originator_id: UUID
    originator_version: int
    timestamp: datetime

    #: Fields that stay inside the owning application's store (hashes, bulky PEM).
    #: They are left out of timelines and of every public message.
    private_fields: ClassVar[frozenset[str]] = frozenset()
    #: Fields added to the event after it was first recorded, shown only when they differ
    #: from their default: a history exported today reads as it did before they existed.
    later_fields: ClassVar[frozenset[str]] = frozenset()

    def public_fields(self) -> dict[str, Any]:
        """The event's own fields without ids, timestamps and private fields."""
        skip = {"originator_id", "originator_version", "timestamp", "originator_topic"}
        data = self.model_dump(mode="json")
        fields = type(self).model_fields
        return {k: v for k, v in data.items() if k not in skip and k not in self.private_fields
                and not (k in self.later_fields and v == fields[k].default)}


class Aggregate(BaseAggregate[UUID]):
    """Aggregate base whose events are pydantic models."""

    @staticmethod
    def create_id(*_: Any, **__: Any) -> UUID:
        return uuid4()

    class Event(DomainEvent, CanMutateAggregate[UUID]):
        pass

    class Created(Event, CanInitAggregate[UUID]):
        originator_topic: str


class PydanticMapper(Mapper[UUID]):
    """Maps pydantic events to stored events and back."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        state = cast(BaseModel, domain_event).model_dump(mode="json")
        stored_state = self.transcoder.encode(state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=get_topic(domain_event.__class__),
            state=stored_state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        stored_state = stored_event.state
        if self.cipher:
            stored_state = self.cipher.decrypt(stored_state)
        if self.compressor:
            stored_state = self.compressor.decompress(stored_state)
        event_state: dict[str, Any] = self.transcoder.decode(stored_state)
        cls = resolve_topic(stored_event.topic)
        return cast(DomainEventProtocol[UUID], cls(**event_state))


class OrjsonTranscoder(Transcoder):
    """JSON transcoder backed by orjson."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


PYDANTIC_ENV: dict[str, str] = {
    "TRANSCODER_TOPIC": get_topic(OrjsonTranscoder),
    "MAPPER_TOPIC": get_topic(PydanticMapper),
}


def read_log(
    app: Application[UUID], topics: Sequence[str] = (), start: int = 1, page: int = 1000
) -> Iterator[tuple[int, DomainEvent]]:
    """Events of an application's notification log from ``start``, with their positions."""
    while True:
        notifications = app.recorder.select_notifications(start, page, topics=topics)
        for n in notifications:
            yield n.id, cast(DomainEvent, app.mapper.to_domain_event(n))
        if len(notifications) < page:
            return
        start = notifications[-1].id + 1


def all_events(app: Application[UUID]) -> list[tuple[int, DomainEvent]]:
    """Every event of an application's notification log, with its position."""
    return list(read_log(app))
