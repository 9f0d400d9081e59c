"""The consuming side: Kafka records → one application batch per partition, tracked exactly once.

The Kafka position (topic, partition, next offset) is recorded as eventsourcing
tracking in the same transaction as the events the batch causes, and the inbox
starts each partition at that recorded position. Partitions are assigned
statically (worker k of n takes the partitions p with p mod n = k): no consumer
group, so no coordinator, rebalances or committed offsets are involved — the
store alone says where to resume. Records that cannot be decoded are logged with
their offset and recorded as ``MessageRejected``; the consumer carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from kafka import KafkaConsumer, TopicPartition
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_incrementing

from adapters.compat.kafka_python import io_wakeup
from adapters.transport.kafka.envelope import MalformedMessage, decode
from adapters.transport.kafka.security import RecordVerifier, UnauthenticatedRecord
from ca_core.messages import Message
from ca_core.processing import MessageDrivenApplication

log = logging.getLogger(__name__)


def source_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


class _IoLoopNudger(threading.Thread):
    """Wakes kafka-python's IO loop ten times a second.

    kafka-python 3.0.12 can lose a cross-thread wake-up: its IO thread then sits in
    select() with no timeout while ``poll()`` waits on it forever (seen here about
    once in six consumer starts; stack: Fetcher.fetch_records → NetworkSelector.run).
    A periodic wake-up ends most such waits within 100 ms; ``serve`` replaces a
    consumer that still hangs. Remove both when kafka-python fixes it.
    """

    def __init__(self, consumer: KafkaConsumer) -> None:
        super().__init__(name="kafka-io-nudger", daemon=True)
        self.consumer = consumer
        self.stopped = threading.Event()

    def run(self) -> None:
        wakeup = io_wakeup(self.consumer)
        while wakeup is not None and not self.stopped.wait(0.1):
            wakeup()


class KafkaInbox:
    """Consumes one topic for one application."""

    def __init__(self, app: MessageDrivenApplication, topic: str, bootstrap: str,
                 client_id: str, *, logical: str, verifier: RecordVerifier,
                 security: dict[str, Any], worker: tuple[int, int] = (0, 1),
                 max_records: int = 2000) -> None:
        self.app = app
        self.topic = topic
        self.logical = logical  # requests, ca-events or portal-events: who may publish it
        self.verifier = verifier
        self.worker = worker
        self.max_records = max_records
        self.tracked: dict[TopicPartition, int] = {}
        self.sought_back: set[TopicPartition] = set()
        self.last_progress = time.monotonic()
        self.abandoned = False
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, client_id=client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=max_records, fetch_max_wait_ms=50, metadata_max_age_ms=5000,
            **security,
        )
        self._nudger = _IoLoopNudger(self.consumer)
        self._nudger.start()
        self._assign()

    def _assign(self) -> None:
        """Take this worker's partitions and start each at the position recorded in our store."""
        deadline = time.monotonic() + 60
        while not (partitions := self.consumer.partitions_for_topic(self.topic)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {self.topic} has no partitions")
            time.sleep(0.2)
        index, count = self.worker
        mine = [TopicPartition(self.topic, p) for p in sorted(partitions) if p % count == index]
        self.consumer.assign(mine)
        self.tracked.clear()
        for tp in mine:
            position = self._tracked(tp)
            if position:
                self.consumer.seek(tp, position)
            else:
                self.consumer.seek_to_beginning(tp)

    def _tracked(self, tp: TopicPartition) -> int:
        """The next offset this application has not yet applied (from its own store)."""
        if tp not in self.tracked:
            position = self.app.recorder.max_tracking_id(source_name(tp.topic, tp.partition))
            self.tracked[tp] = position or 0
            log.info("inbox %s: %s resumes at offset %d", self.app.name,
                     source_name(tp.topic, tp.partition), self.tracked[tp],
                     extra={"topic": tp.topic, "partition": tp.partition,
                            "offset": self.tracked[tp]})
        return self.tracked[tp]

    @property
    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def lag(self) -> int:
        """Records of its partitions this inbox has not applied (the broker's high
        watermarks as last fetched; metrics, read from another thread)."""
        behind = 0
        for tp, applied in list(self.tracked.items()):
            high = self.consumer.highwater(tp)
            if high is not None:
                behind += max(0, high - applied)
        return behind

    def poll_once(self, timeout_ms: int = 100) -> int:
        """Poll once and apply what arrived; returns the number of records handled."""
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        self.last_progress = time.monotonic()
        if self.abandoned:
            return 0  # a replacement consumer owns the partitions now
        handled = 0
        for tp, fetched in polled.items():
            tracked = self._tracked(tp)
            if fetched[0].offset > tracked and tp not in self.sought_back:
                # the group's committed offset is ahead of what we applied: go back once
                log.warning("inbox %s: %s fetched from %d but applied only to %d; seeking back",
                            self.app.name, source_name(tp.topic, tp.partition),
                            fetched[0].offset, tracked)
                self.sought_back.add(tp)
                self.consumer.seek(tp, tracked)
                continue
            if fetched[0].offset > tracked and tracked > 0:
                log.error("inbox %s: offsets %d–%d of %s are gone (retention?)", self.app.name,
                          tracked, fetched[0].offset - 1, source_name(tp.topic, tp.partition))
            records = [r for r in fetched if r.offset >= tracked]  # drop what was applied
            if not records:
                continue
            messages: list[Message] = []
            rejected: list[tuple[int, str, str]] = []
            now = datetime.now(UTC)
            for record in records:
                try:
                    # nothing is believed before its signature: an unsigned, altered or
                    # foreign record is only ever recorded as MessageRejected
                    self.verifier.verify(self.logical, tp.topic, record.key, record.headers,
                                         record.value, now)
                    messages.append(decode(record.headers, record.value))
                except (MalformedMessage, UnauthenticatedRecord) as exc:
                    log.warning("%s: rejected record at offset %d: %s",
                                source_name(tp.topic, tp.partition), record.offset, exc,
                                extra={"topic": tp.topic, "partition": tp.partition,
                                       "offset": record.offset})
                    excerpt = (record.value or b"")[:200].decode("utf-8", "replace")
                    rejected.append((record.offset + 1, str(exc), excerpt))
            self._apply(tp, messages, rejected, records[-1].offset + 1)
            self.tracked[tp] = records[-1].offset + 1
            log.debug("inbox %s: applied %d records from %s (next offset %d)", self.app.name,
                     len(records), source_name(tp.topic, tp.partition), records[-1].offset + 1)
            handled += len(records)
        return handled

    def _apply(self, tp: TopicPartition, messages: list[Message],
               rejected: list[tuple[int, str, str]], next_offset: int) -> None:
        source = source_name(tp.topic, tp.partition)

        def apply() -> None:
            try:
                self.app.process_batch(messages, Tracking(source, next_offset), rejected)
            except IntegrityError:
                if (self.app.recorder.max_tracking_id(source) or 0) >= next_offset:
                    return  # this batch was already applied: a redelivery changes nothing
                raise  # a concurrent writer won: reload and retry

        try:
            Retrying(retry=retry_if_exception_type(IntegrityError), stop=stop_after_attempt(10),
                     wait=wait_incrementing(0.01, 0.01), reraise=True)(apply)
        except IntegrityError as exc:
            raise RuntimeError(f"{source}: could not apply batch ending at {next_offset}") from exc

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set() and not self.abandoned:
            try:
                self.poll_once(timeout_ms=200)
            except Exception:
                log.exception("inbox %s: processing failed; retrying", self.app.name)
                stop.wait(1.0)
                self._assign()  # back to the recorded positions

    def close(self) -> None:
        self._nudger.stopped.set()
        if not self.abandoned:  # an abandoned consumer may be wedged: leave it to exit
            self.consumer.close()
