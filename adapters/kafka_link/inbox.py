"""The consuming side: Kafka records → one application batch per partition, tracked exactly once.

The Kafka position (topic, partition, next offset) is recorded as eventsourcing
tracking in the same transaction as the events the batch causes. On assignment
the consumer seeks to the recorded position, so the group's committed offsets
are only a hint. Records that cannot be decoded are logged with their offset and
recorded as ``MessageRejected``; the consumer carries on.
"""

from __future__ import annotations

import logging
import threading
import time

from eventsourcing.persistence import IntegrityError, Tracking
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from adapters.kafka_link.envelope import MalformedMessage, decode
from ca_core.messages import Message
from ca_core.processing import MessageDrivenApplication

log = logging.getLogger(__name__)


def source_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


class _SeekToTracked(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, inbox: KafkaInbox) -> None:
        self.inbox = inbox

    def on_partitions_revoked(self, revoked: object) -> None:
        pass

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self.inbox.seek_to_tracked(tp)


class KafkaInbox:
    """Consumes one topic for one application."""

    def __init__(self, app: MessageDrivenApplication, topic: str, bootstrap: str,
                 group_id: str, max_records: int = 2000) -> None:
        self.app = app
        self.topic = topic
        self.max_records = max_records
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group_id, client_id=f"{group_id}-{app.name}",
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=max_records, fetch_max_wait_ms=50,
        )
        self.consumer.subscribe([topic], listener=_SeekToTracked(self))

    def seek_to_tracked(self, tp: TopicPartition) -> None:
        position = self.app.recorder.max_tracking_id(source_name(tp.topic, tp.partition))
        if position is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, position)  # tracking holds the next offset to read

    @property
    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def poll_once(self, timeout_ms: int = 100) -> int:
        """Poll once and apply what arrived; returns the number of records handled."""
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        handled = 0
        for tp, records in polled.items():
            messages: list[Message] = []
            rejected: list[tuple[int, str, str]] = []
            for record in records:
                try:
                    messages.append(decode(record.headers, record.value))
                except MalformedMessage as exc:
                    log.warning("%s: rejected record at offset %d: %s",
                                source_name(tp.topic, tp.partition), record.offset, exc)
                    excerpt = (record.value or b"")[:200].decode("utf-8", "replace")
                    rejected.append((record.offset + 1, str(exc), excerpt))
            self._apply(tp, messages, rejected, records[-1].offset + 1)
            handled += len(records)
        if polled:
            self.consumer.commit_async()
        return handled

    def _apply(self, tp: TopicPartition, messages: list[Message],
               rejected: list[tuple[int, str, str]], next_offset: int) -> None:
        source = source_name(tp.topic, tp.partition)
        for attempt in range(10):
            try:
                self.app.process_batch(messages, Tracking(source, next_offset), rejected)
            except IntegrityError:
                if (self.app.recorder.max_tracking_id(source) or 0) >= next_offset:
                    return  # this batch was already applied: a redelivery changes nothing
                time.sleep(0.01 * (attempt + 1))  # a concurrent writer won; reload and retry
            else:
                return
        raise RuntimeError(f"{source}: could not apply batch ending at {next_offset}")

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once(timeout_ms=200)
            except Exception:
                log.exception("inbox %s: processing failed; retrying", self.app.name)
                self.consumer.unsubscribe()
                self.consumer.subscribe([self.topic], listener=_SeekToTracked(self))
                stop.wait(1.0)

    def close(self) -> None:
        self.consumer.close()
