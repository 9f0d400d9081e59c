"""The outbox relay: follows an application's notification log and publishes to Kafka.

The event store is the outbox (no dual writes). The relay records how far it has
published only after the broker acknowledged every record of the page (acks=all,
idempotent producer), so a crash can repeat a page but never skip one; consumers
recognise repeats by the CloudEvents id and by the domain's own idempotence.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any, cast

from eventsourcing.persistence import Tracking, TrackingRecorder
from kafka import KafkaProducer

from adapters.periodic import run_periodically
from adapters.transport.kafka.envelope import encode
from adapters.transport.kafka.security import RecordSigner
from ca_core.eventmodel import DomainEvent
from ca_core.messages import Message
from ca_core.processing import MessageDrivenApplication

log = logging.getLogger(__name__)

Outbox = Callable[[DomainEvent], list[tuple[str, Message]]]


#: Producer batch size: just under the broker's default message.max.bytes (1,048,588), so a
#: page's records for one partition mostly fit one batch. kafka-python wakes its sender
#: thread for every record appended while a partition has a second batch waiting; with
#: 256 KiB batches that cost a sixth of the producer's CPU.
BATCH_BYTES = 1_000_000


def new_producer(bootstrap: str, client_id: str,
                 security: dict[str, Any] | None = None) -> KafkaProducer:
    """An idempotent producer; ``security``: the role's TLS options (RoleCredentials)."""
    return KafkaProducer(
        bootstrap_servers=bootstrap, client_id=client_id, acks="all", **(security or {}),
        # the relay flushes after every page, so batches need not linger on their own
        enable_idempotence=True, linger_ms=100, batch_size=BATCH_BYTES,
        compression_type=None, retries=2**31 - 1, max_in_flight_requests_per_connection=5,
    )


class KafkaRelay:
    """Publishes one application's outbox events; ``run_once`` handles one page."""

    def __init__(
        self,
        app: MessageDrivenApplication,
        outbox: Outbox,
        log_topics: Sequence[str],
        producer: KafkaProducer,
        position: TrackingRecorder,
        topic_names: dict[str, str],
        signer: RecordSigner,
        page: int = 2000,
    ) -> None:
        self.app = app
        self.outbox = outbox
        self.log_topics = log_topics
        self.producer = producer
        self.position = position
        self.topic_names = topic_names
        self.signer = signer
        self.page = page
        self.source = f"/partner-ca/{app.name}"
        self._published: int | None = None  # read from the store after start and after errors
        self._scanned = 0  # positions up to here hold nothing more to publish (in memory only)
        self._partition_counts: dict[str, int] = {}

    def _partition(self, topic: str, key: bytes) -> int:
        """CRC-32 of the key modulo the topic's partitions: one key, one partition, so a
        request's messages keep their order. (kafka-python's default murmur2 is pure Python
        and cost about 6 % of a relay's time.)"""
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._partition_counts[topic] = len(self.producer.partitions_for(topic))
        return zlib.crc32(key) % count

    def published_up_to(self) -> int:
        if self._published is None:
            self._published = self.position.max_tracking_id(self.app.name) or 0
        return self._published

    def backlog(self) -> int:
        """Log positions not yet published nor known to hold nothing to publish (metrics;
        read from another thread: plain attribute reads and one query)."""
        done = max(self._published or 0, self._scanned)
        return max(0, (self.app.recorder.max_notification_id() or 0) - done)

    def run_once(self) -> int:
        """Publish the next page of outbox events; returns how many records were sent."""
        start = max(self.published_up_to(), self._scanned) + 1
        # Up to the log's end as it is now: a row committed later has a higher position
        # (inserts take the table lock and number their rows inside it), so once a short page
        # comes back, the rows of other topics up to here need not be read again.
        head = self.app.recorder.max_notification_id() or 0
        if head < start:
            return 0
        notifications = self.app.recorder.select_notifications(start, self.page, stop=head,
                                                               topics=self.log_topics)
        if len(notifications) < self.page:
            self._scanned = head
        if not notifications:
            return 0
        records: list[tuple[str, bytes, list[tuple[str, bytes]], bytes]] = []
        for n in notifications:
            event = cast(DomainEvent, self.app.mapper.to_domain_event(n))
            for logical, message in self.outbox(event):
                key, value, headers = encode(message, self.source)
                records.append((self.topic_names[logical], key, headers, value))
        futures = [self.producer.send(topic, value=value, key=key, headers=headers,
                                      partition=self._partition(topic, key))
                   for (topic, key, _, value), headers in zip(
                       records, self.signer.sign_page(records), strict=True)]
        self.producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker did not acknowledge
        self.position.insert_tracking(Tracking(self.app.name, notifications[-1].id))
        self._published = notifications[-1].id
        log.debug("relay %s: published %d records up to position %d", self.app.name,
                 len(futures), notifications[-1].id)
        return len(futures)

    def run(self, stop: threading.Event, idle_wait: float = 0.05) -> None:
        self._forget()  # another process may have published since this one last ran
        # after a failure (the broker away, a store): what it remembers is read again (e.g.
        # another relay recorded a position)
        run_periodically(f"relay {self.app.name}: publishing",
                         lambda: idle_wait if self.run_once() == 0 else 0.0, stop, log,
                         after_failure=1.0, on_failure=self._forget)

    def _forget(self) -> None:
        """What this relay remembers of the store: read again at the next page."""
        self._published = None
        self._scanned = 0
        self._partition_counts = {}
