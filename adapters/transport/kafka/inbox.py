"""The consuming side: Kafka records → one application batch per partition, tracked exactly once.

The Kafka position (topic, partition, next offset) is recorded as eventsourcing
tracking in the same transaction as the events the batch causes. Inboxes of one
application join one Kafka consumer group (``<topic prefix><app>-inbox``): the
group coordinator spreads the partitions over the live workers and moves them to
the survivors when one dies (its session times out) or to a new one when it
joins. On every assignment the inbox seeks each partition to the position
recorded in *our* store — offsets committed to Kafka are never read — so a
rebalance neither loses nor redoes an effect: a worker that still applies a
batch for a partition it has just lost collides with the new owner's tracking
record, and whatever part of its batch the other already applied is dropped.
Records that cannot be decoded are logged with their offset and recorded as
``MessageRejected``; the consumer carries on.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from kafka import KafkaConsumer, TopicPartition
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_incrementing

from adapters.periodic import run_periodically
from adapters.transport.kafka.consumer import CaredConsumer
from adapters.transport.kafka.envelope import MalformedMessage, decode
from adapters.transport.kafka.security import RecordVerifier, UnauthenticatedRecord
from adapters.transport.kafka.unreadable import Unreadable
from ca_core.messages import Message
from ca_core.processing import MessageDrivenApplication

log = logging.getLogger(__name__)


def source_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


def group_id(topic_prefix: str, app_name: str) -> str:
    """The consumer group of one application's inboxes (the ACLs grant exactly this id)."""
    return f"{topic_prefix}{app_name.lower()}-inbox"


class KafkaInbox:
    """Consumes one topic for one application, as a member of that application's group."""

    def __init__(self, app: MessageDrivenApplication, topic: str, bootstrap: str,
                 client_id: str, *, logical: str, verifier: RecordVerifier,
                 security: dict[str, Any], group: str, max_records: int = 2000) -> None:
        self.app = app
        self.topic = topic
        self.logical = logical  # requests, ca-events or portal-events: who may publish it
        self.verifier = verifier
        self.group = group
        self.max_records = max_records
        self.tracked: dict[TopicPartition, int] = {}
        self._lock = threading.Lock()  # tracked: the IO thread's listener, poll(), metrics
        self.reader = CaredConsumer(
            f"inbox {app.name}", bootstrap, client_id, security,
            lambda tp: self._tracked(tp, fresh=True), group=group, max_records=max_records,
            on_revoked=self.forget)
        self.reader.subscribe(topic)

    @property
    def consumer(self) -> KafkaConsumer:
        """The kafka-python consumer in use (a stuck one is replaced: read it each time)."""
        return self.reader.consumer

    @property
    def last_progress(self) -> float:
        return self.reader.last_progress

    @property
    def abandoned(self) -> bool:
        return self.reader.abandoned

    def start_at_tracked(self, partitions: Any) -> None:
        """Start each partition at the next offset our store has not applied."""
        self.reader.start_at(partitions)

    def forget(self, partitions: Any) -> None:
        """Revoked partitions: another worker advances them now; read them afresh if back."""
        with self._lock:
            for tp in partitions:
                self.tracked.pop(tp, None)
        if partitions:
            log.info("inbox %s: gave up %s", self.app.name,
                     ", ".join(str(tp.partition) for tp in sorted(partitions)),
                     extra={"topic": self.topic, "group": self.group})

    def _tracked(self, tp: TopicPartition, fresh: bool = False) -> int:
        """The next offset this application has not yet applied (from its own store)."""
        with self._lock:
            known = None if fresh else self.tracked.get(tp)
        if known is not None:
            return known
        position = self.app.recorder.max_tracking_id(source_name(tp.topic, tp.partition)) or 0
        with self._lock:
            self.tracked[tp] = position
        log.debug("inbox %s: %s resumes at offset %d", self.app.name,
                  source_name(tp.topic, tp.partition), position,
                  extra={"topic": tp.topic, "partition": tp.partition, "offset": position})
        return position

    @property
    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def lag(self) -> int:
        """Records of its partitions this inbox has not applied (the broker's high
        watermarks as last fetched; metrics, read from another thread)."""
        behind = 0
        with self._lock:
            tracked = list(self.tracked.items())
        for tp, applied in tracked:
            high = self.consumer.highwater(tp)
            if high is not None:
                behind += max(0, high - applied)
        return behind

    def poll_once(self, timeout_ms: int = 100) -> int:
        """Poll once and apply what arrived; returns the number of records handled."""
        polled = self.reader.poll(timeout_ms)
        if polled.unreadable is not None:
            self._reject_unreadable(polled.unreadable, polled.error)
            return 0
        handled = 0
        for tp, fetched in polled.records.items():
            tracked = self._tracked(tp)
            if fetched[0].offset > tracked and tracked > 0:
                log.error("inbox %s: offsets %d–%d of %s are gone (retention?)", self.app.name,
                          tracked, fetched[0].offset - 1, source_name(tp.topic, tp.partition))
            records = [r for r in fetched if r.offset >= tracked]  # drop what was applied
            if not records:
                continue
            messages: list[tuple[int, Message]] = []
            rejected: list[tuple[int, str, str]] = []
            now = datetime.now(UTC)
            for record in records:
                try:
                    # nothing is believed before its signature: an unsigned, altered or
                    # foreign record is only ever recorded as MessageRejected
                    self.verifier.verify(self.logical, tp.topic, record.key, record.headers,
                                         record.value, now)
                    messages.append((record.offset, decode(record.headers, record.value)))
                except (MalformedMessage, UnauthenticatedRecord) as exc:
                    log.warning("%s: rejected record at offset %d: %s",
                                source_name(tp.topic, tp.partition), record.offset, exc,
                                extra={"topic": tp.topic, "partition": tp.partition,
                                       "offset": record.offset})
                    excerpt = (record.value or b"")[:200].decode("utf-8", "replace")
                    rejected.append((record.offset + 1, str(exc), excerpt))
            next_offset = records[-1].offset + 1
            self._apply(tp, messages, rejected, next_offset)
            with self._lock:
                self.tracked[tp] = next_offset
            log.debug("inbox %s: applied %d records from %s (next offset %d)", self.app.name,
                      len(records), source_name(tp.topic, tp.partition), next_offset,
                      extra={"topic": tp.topic, "partition": tp.partition,
                             "offset": next_offset})
            handled += len(records)
        return handled

    def _reject_unreadable(self, found: Unreadable, exc: Exception | None) -> None:
        """Records kafka-python cannot parse (unreadable.py): one MessageRejected naming
        their offsets, and on after them; readable records before them were applied first."""
        tp = found.partition
        reason = (f"unreadable records at offsets {found.first}–{found.end - 1}: "
                  f"kafka-python cannot parse them ({exc})")
        log.warning("%s: rejected %s", source_name(tp.topic, tp.partition), reason,
                    extra={"topic": tp.topic, "partition": tp.partition, "offset": found.first})
        try:
            self._apply(tp, [], [(found.end, reason, "")], found.end)
            with self._lock:
                self.tracked[tp] = found.end
        finally:
            self.reader.resume()

    def _apply(self, tp: TopicPartition, messages: list[tuple[int, Message]],
               rejected: list[tuple[int, str, str]], next_offset: int) -> None:
        """One transaction for the batch. A conflict means another writer got there first —
        a worker that owned this partition before a rebalance, or a concurrent update of
        the same aggregate: what the store now says was applied is dropped from the batch,
        the rest is applied again on freshly read state."""
        source = source_name(tp.topic, tp.partition)

        def apply() -> None:
            nonlocal messages, rejected
            try:
                self.app.process_batch([m for _, m in messages], Tracking(source, next_offset),
                                       rejected)
            except IntegrityError:
                applied = self.app.recorder.max_tracking_id(source) or 0
                if applied >= next_offset:
                    return  # all of it was applied elsewhere: a redelivery changes nothing
                messages = [(o, m) for o, m in messages if o >= applied]
                rejected = [r for r in rejected if r[0] > applied]
                raise

        try:
            Retrying(retry=retry_if_exception_type(IntegrityError), stop=stop_after_attempt(10),
                     wait=wait_incrementing(0.01, 0.01), reraise=True)(apply)
        except IntegrityError as exc:
            raise RuntimeError(f"{source}: could not apply batch ending at {next_offset}") from exc

    def run(self, stop: threading.Event) -> None:
        def step() -> float:
            self.poll_once(timeout_ms=200)
            return 0.0

        # after a failure (the broker away, a record, a store): back to recorded positions
        run_periodically(f"inbox {self.app.name}", step, stop, log, after_failure=1.0,
                         on_failure=self.reader.resume, going=lambda: not self.abandoned)

    def abandon(self) -> None:
        """Give this inbox up for a new one (``CaredConsumer.abandon``)."""
        self.reader.abandon()

    def close(self) -> None:
        self.reader.close()
