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
import time
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_incrementing

from adapters.compat.kafka_python import (
    finish_join,
    io_wakeup,
    join_abandoned,
    needs_join,
    rebalancing,
    request_rejoin,
)
from adapters.transport.kafka.envelope import MalformedMessage, decode
from adapters.transport.kafka.outage import FailureStreak
from adapters.transport.kafka.security import RecordVerifier, UnauthenticatedRecord
from adapters.transport.kafka.unreadable import UNREADABLE, find_unreadable
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


#: A worker that stops heartbeating leaves the group (its partitions move) after this long.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 2_000
#: How long the inbox waits for a rebalance under way to finish, in one call: kafka-python
#: 3.0.12 can leave a join that short polls keep timing out on unfinished for ever
#: (adapters/compat/kafka_python.py). The inbox holds no partitions meanwhile.
JOIN_WAIT_MS = 15_000
#: A worker whose rebalance has not finished after this long is replaced by a new consumer.
STUCK_REBALANCE_SECONDS = 30.0
#: An inbox that applied nothing for this long checks the broker's end offsets; records it
#: cannot fetch (kafka-python kept a dead broker as a partition's leader) → a new consumer.
STALL_CHECK_SECONDS = 30.0


def group_id(topic_prefix: str, app_name: str) -> str:
    """The consumer group of one application's inboxes (the ACLs grant exactly this id)."""
    return f"{topic_prefix}{app_name.lower()}-inbox"


class _Positions(ConsumerRebalanceListener):
    """Seeks each newly assigned partition to the position in our store, forgets revoked ones.

    kafka-python 3.0.12 calls this on its IO thread (heartbeats wait meanwhile): it does one
    indexed read per partition and ``seek``, nothing that blocks for long.
    """

    def __init__(self, inbox: KafkaInbox, consumer: KafkaConsumer) -> None:
        self.inbox = inbox
        self.consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        if self.consumer is self.inbox.consumer:  # not a replaced consumer's last words
            self.inbox.forget(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self.consumer is self.inbox.consumer:
            self.inbox.start_at_tracked(assigned)


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
        self.last_progress = time.monotonic()
        self.abandoned = False
        self._bootstrap, self._client_id, self._security = bootstrap, client_id, security
        self.consumer = self._new_consumer()
        self.consumer.subscribe([topic], listener=_Positions(self, self.consumer))

    def _new_consumer(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=self.group, client_id=self._client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            max_poll_records=self.max_records, fetch_max_wait_ms=50, metadata_max_age_ms=5000,
            **self._security,
        )
        self._nudger = _IoLoopNudger(consumer)
        self._nudger.start()
        self._rebalancing_since: float | None = None
        self._last_applied = time.monotonic()
        return consumer

    def _replace_if_stalled(self) -> None:
        """Nothing applied for a while: are there records we should have had?"""
        partitions = list(self.consumer.assignment())
        if not partitions:
            return
        try:
            ends = self.consumer.end_offsets(partitions, timeout_ms=5000)
            behind = [tp for tp in partitions
                      if ends.get(tp, 0) > self._tracked(tp)]
        except Exception as exc:  # noqa: BLE001 - unanswered is as bad as behind
            log.warning("inbox %s: end offsets unanswered (%s)", self.app.name, exc)
            behind = partitions
        if behind:
            log.error("inbox %s: nothing fetched for %.0f s while %s have records; "
                      "starting a new consumer", self.app.name, STALL_CHECK_SECONDS,
                      ", ".join(str(tp.partition) for tp in sorted(behind)))
            self._replace()

    def _replace(self) -> None:
        """A new consumer (fresh metadata, a new member); the old one is closed aside."""
        old, nudger = self.consumer, self._nudger
        nudger.stopped.set()
        threading.Thread(target=old.close, kwargs={"timeout_ms": 5000}, daemon=True,
                         name="kafka-close-replaced").start()
        with self._lock:
            self.tracked.clear()
        self.consumer = self._new_consumer()
        self.consumer.subscribe([self.topic], listener=_Positions(self, self.consumer))

    def _replace_if_stuck(self) -> None:
        """A rebalance that has not finished in STUCK_REBALANCE_SECONDS: a new member."""
        if not rebalancing(self.consumer):
            self._rebalancing_since = None
            return
        now = time.monotonic()
        if self._rebalancing_since is None:
            self._rebalancing_since = now
        elif now - self._rebalancing_since > STUCK_REBALANCE_SECONDS:
            log.error("inbox %s: rebalance of group %s unfinished after %.0f s; "
                      "joining again with a new consumer", self.app.name, self.group,
                      now - self._rebalancing_since)
            self._replace()

    def start_at_tracked(self, partitions: Any) -> None:
        """Start each partition at the next offset our store has not applied."""
        for tp in partitions:
            position = self._tracked(tp, fresh=True)
            if position:
                self.consumer.seek(tp, position)
            else:
                self.consumer.seek_to_beginning(tp)
        log.info("inbox %s: assigned %s", self.app.name,
                 ", ".join(f"{tp.partition}@{self.tracked.get(tp, 0)}"
                           for tp in sorted(partitions)) or "nothing",
                 extra={"topic": self.topic, "group": self.group})

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
        if join_abandoned(self.consumer):  # a join that a short poll gave up on finished
            log.warning("inbox %s: a finished join of group %s was left unapplied by "
                        "kafka-python; joining again", self.app.name, self.group)
            request_rejoin(self.consumer)
        if rebalancing(self.consumer) or needs_join(self.consumer):
            finish_join(self.consumer, JOIN_WAIT_MS)  # the whole join in one call
        try:
            polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        except UNREADABLE as exc:
            self._skip_unreadable(exc)
            return 0
        self.last_progress = time.monotonic()
        self._replace_if_stuck()
        if polled:
            self._last_applied = self.last_progress
        elif self.last_progress - self._last_applied > STALL_CHECK_SECONDS:
            self._last_applied = self.last_progress
            self._replace_if_stalled()
        if self.abandoned:
            return 0  # a replacement consumer owns the partitions now
        handled = 0
        for tp, fetched in polled.items():
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

    def _skip_unreadable(self, exc: Exception) -> None:
        """poll() raised for records kafka-python cannot parse (unreadable.py): record them
        as one MessageRejected naming their offsets and go on after them; readable records
        before them are applied first, as usual."""
        log.warning("inbox %s: kafka-python cannot read what it fetched (%s); looking for "
                    "the records", self.app.name, exc)
        partitions = self.consumer.assignment()
        try:
            found = find_unreadable(self.consumer, lambda tp: self._tracked(tp, fresh=True))
            if found is not None:
                tp = found.partition
                reason = (f"unreadable records at offsets {found.first}–{found.end - 1}: "
                          f"kafka-python cannot parse them ({exc})")
                log.warning("%s: rejected %s", source_name(tp.topic, tp.partition), reason,
                            extra={"topic": tp.topic, "partition": tp.partition,
                                   "offset": found.first})
                self._apply(tp, [], [(found.end, reason, "")], found.end)
                with self._lock:
                    self.tracked[tp] = found.end
        finally:
            self.start_at_tracked(partitions)

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
        streak = FailureStreak(log, f"inbox {self.app.name}")
        while not stop.is_set() and not self.abandoned:
            try:
                self.poll_once(timeout_ms=200)
                streak.succeeded()
            except Exception as exc:  # noqa: BLE001 - the broker away, a record, a store: retry
                streak.failed(exc)
                stop.wait(1.0)
                try:  # back to recorded positions
                    self.start_at_tracked(self.consumer.assignment())
                except Exception:  # noqa: BLE001, S110 - the next poll says what is wrong
                    pass

    def abandon(self) -> None:
        """Give this inbox up for a new one: it stops polling, and its consumer leaves the
        group in the background. A consumer left behind would go on heartbeating without
        ever rejoining, and every rebalance of the group would wait for it until the
        broker's rebalance timeout (minutes) — seen after a broker outage."""
        self.abandoned = True
        self._nudger.stopped.set()
        threading.Thread(target=self.consumer.close, kwargs={"timeout_ms": 5000},
                         daemon=True, name="kafka-close-abandoned").start()

    def close(self) -> None:
        self._nudger.stopped.set()
        if not self.abandoned:  # an abandoned consumer may be wedged: leave it to exit
            self.consumer.close()
