"""kafka-python's consumer with every workaround this project needs, in one class.

kafka-python 3.0.12 needs care that has nothing to do with what a record means; it all
lives here, so a Kafka hang is looked for in one place (the private parts it touches are
named only in adapters/compat/kafka_python.py):

- **IO wake-up**: its IO thread can lose a cross-thread wake-up and sit in select() while
  ``poll()`` waits on it for ever; a thread wakes it ten times a second.
- **Joins**: a group join that short polls time out on may never finish, and one that
  finished after its poll returned is never applied; joins are driven whole, and asked for
  again when left unapplied.
- **Stuck rebalance**: a member still rebalancing after 30 s is replaced by a new consumer.
- **Stall**: nothing fetched for 30 s while the broker's end offsets say there are records
  (it kept a dead broker as a partition's leader): a new consumer.
- **Unreadable records**: ``poll()`` raising at the same offset for ever (a codec it has no
  library for, a header that is not UTF-8, a broken CRC): the records are found
  (unreadable.py) and handed to the caller, who records them and goes on after them.
- **Wedged**: ``poll()`` that has not returned for ``WEDGED_AFTER_SECONDS``: ``wedged()``
  says so, and ``serve`` gives the consumer up (``abandon``) for a new one.

Positions are never Kafka's: ``next_offset(tp)`` (the caller's store) says where each
assigned partition starts, on every assignment and after every unreadable stretch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

from adapters.compat.kafka_python import (
    finish_join,
    io_wakeup,
    join_abandoned,
    needs_join,
    rebalancing,
    request_rejoin,
)
from adapters.transport.kafka.unreadable import UNREADABLE, Unreadable, find_unreadable

log = logging.getLogger(__name__)

#: A worker that stops heartbeating leaves the group (its partitions move) after this long.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 2_000
#: How long a rebalance under way may take in one call: kafka-python 3.0.12 can leave a join
#: that short polls keep timing out on unfinished for ever (adapters/compat/kafka_python.py).
#: The consumer holds no partitions meanwhile.
JOIN_WAIT_MS = 15_000
#: A member whose rebalance has not finished after this long is replaced by a new consumer.
STUCK_REBALANCE_SECONDS = 30.0
#: Nothing fetched for this long: the broker's end offsets are checked; records it cannot
#: fetch (kafka-python kept a dead broker as a partition's leader) → a new consumer.
STALL_CHECK_SECONDS = 30.0
#: ``poll()`` not returned for this long: the consumer is wedged (``serve`` replaces it).
WEDGED_AFTER_SECONDS = 30.0


class _IoLoopNudger(threading.Thread):
    """Wakes kafka-python's IO loop ten times a second (a lost wake-up then ends within
    100 ms; a consumer that still hangs is ``wedged``). Remove when kafka-python fixes it."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        super().__init__(name="kafka-io-nudger", daemon=True)
        self.consumer = consumer
        self.stopped = threading.Event()

    def run(self) -> None:
        wakeup = io_wakeup(self.consumer)
        while wakeup is not None and not self.stopped.wait(0.1):
            wakeup()


class _Positions(ConsumerRebalanceListener):
    """Each newly assigned partition starts at the caller's position; revoked ones are told.

    kafka-python 3.0.12 calls this on its IO thread (heartbeats wait meanwhile): one indexed
    read per partition and ``seek``, nothing that blocks for long."""

    def __init__(self, owner: CaredConsumer, consumer: KafkaConsumer) -> None:
        self.owner, self.consumer = owner, consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        if self.consumer is self.owner.consumer:  # not a replaced consumer's last words
            self.owner.on_revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self.consumer is self.owner.consumer:
            positions = self.owner.start_at(assigned)
            log.info("%s: assigned %s", self.owner.name, ", ".join(
                f"{tp.partition}@{positions[tp]}" for tp in sorted(assigned)) or "nothing",
                extra={"topic": self.owner.topic, "group": self.owner.group})


@dataclass
class Polled:
    """What one ``poll`` brought: records per partition, or the unreadable records it found
    (record them, then ``resume``)."""

    records: dict[TopicPartition, list[Any]] = field(default_factory=dict)
    unreadable: Unreadable | None = None
    error: Exception | None = None


class CaredConsumer:
    """A KafkaConsumer that is a group member (``subscribe``) or reads assigned partitions
    (``assign``), kept going through kafka-python's known faults."""

    def __init__(self, name: str, bootstrap: str, client_id: str, security: dict[str, Any],
                 next_offset: Callable[[TopicPartition], int], *, group: str | None = None,
                 max_records: int = 500, fetch_max_wait_ms: int = 50,
                 on_revoked: Callable[[Iterable[TopicPartition]], None] | None = None) -> None:
        self.name = name
        self.next_offset = next_offset
        self.group = group
        self.max_records = max_records
        self.on_revoked: Callable[[Iterable[TopicPartition]], None] = \
            on_revoked or (lambda _: None)
        self._options: dict[str, Any] = dict(
            bootstrap_servers=bootstrap, group_id=group, client_id=client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_max_wait_ms, **security)
        if group is not None:
            self._options.update(session_timeout_ms=SESSION_TIMEOUT_MS,
                                 heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
                                 max_poll_records=max_records, metadata_max_age_ms=5000)
        self._topic: str | None = None
        self.last_progress = time.monotonic()
        self.abandoned = False
        self.consumer = self._new_consumer()

    # -- membership -----------------------------------------------------------------------
    def _new_consumer(self) -> KafkaConsumer:
        consumer = KafkaConsumer(**self._options)
        self._nudger = _IoLoopNudger(consumer)
        self._nudger.start()
        self._rebalancing_since: float | None = None
        self._last_fetched = time.monotonic()
        return consumer

    def subscribe(self, topic: str) -> None:
        """Join the group for ``topic``; partitions start at ``next_offset`` when assigned."""
        self._topic = topic
        self.consumer.subscribe([topic], listener=_Positions(self, self.consumer))

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read ``partitions`` (no group), each from ``next_offset``."""
        self.consumer.assign(partitions)
        self.start_at(partitions)

    def start_at(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition from the next offset the caller has not handled (returned)."""
        positions = {}
        for tp in partitions:
            positions[tp] = position = self.next_offset(tp)
            if position:
                self.consumer.seek(tp, position)
            else:
                self.consumer.seek_to_beginning(tp)
        return positions

    def resume(self) -> None:
        """Every assigned partition back to the caller's positions (after an unreadable
        stretch was recorded, or a failed batch)."""
        self.start_at(self.consumer.assignment())

    @property
    def topic(self) -> str | None:
        return self._topic

    # -- reading ---------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 100) -> Polled:
        """Records per partition; or, when kafka-python cannot parse what it fetched, the
        unreadable records found (None found: try again)."""
        if self.group is not None:
            self._drive_join()
        try:
            records = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        except UNREADABLE as exc:
            return self._unreadable(exc)
        self.last_progress = time.monotonic()
        if self.group is not None:
            self._replace_if_stuck()
            if records:
                self._last_fetched = self.last_progress
            elif self.last_progress - self._last_fetched > STALL_CHECK_SECONDS:
                self._last_fetched = self.last_progress
                self._replace_if_stalled()
        return Polled(records=dict(records) if not self.abandoned else {})

    def _drive_join(self) -> None:
        if join_abandoned(self.consumer):  # a join that a short poll gave up on finished
            log.warning("%s: a finished join of group %s was left unapplied by "
                        "kafka-python; joining again", self.name, self.group)
            request_rejoin(self.consumer)
        if rebalancing(self.consumer) or needs_join(self.consumer):
            finish_join(self.consumer, JOIN_WAIT_MS)  # the whole join in one call

    def _unreadable(self, exc: Exception) -> Polled:
        log.warning("%s: kafka-python cannot read what it fetched (%s); looking for the "
                    "records", self.name, exc)
        found = None
        try:
            found = find_unreadable(self.consumer, self.next_offset)
        finally:
            if found is None:
                self.resume()
        return Polled(unreadable=found, error=exc)

    # -- replacing a consumer that is stuck -----------------------------------------------
    def _replace_if_stuck(self) -> None:
        """A rebalance that has not finished in STUCK_REBALANCE_SECONDS: a new member."""
        if not rebalancing(self.consumer):
            self._rebalancing_since = None
            return
        now = time.monotonic()
        if self._rebalancing_since is None:
            self._rebalancing_since = now
        elif now - self._rebalancing_since > STUCK_REBALANCE_SECONDS:
            log.error("%s: rebalance of group %s unfinished after %.0f s; joining again "
                      "with a new consumer", self.name, self.group,
                      now - self._rebalancing_since)
            self._replace()

    def _replace_if_stalled(self) -> None:
        """Nothing fetched for a while: are there records we should have had?"""
        partitions = list(self.consumer.assignment())
        if not partitions:
            return
        try:
            ends = self.consumer.end_offsets(partitions, timeout_ms=5000)
            behind = [tp for tp in partitions if ends.get(tp, 0) > self.next_offset(tp)]
        except Exception as exc:  # noqa: BLE001 - unanswered is as bad as behind
            log.warning("%s: end offsets unanswered (%s)", self.name, exc)
            behind = partitions
        if behind:
            log.error("%s: nothing fetched for %.0f s while %s have records; starting a new "
                      "consumer", self.name, STALL_CHECK_SECONDS,
                      ", ".join(str(tp.partition) for tp in sorted(behind)))
            self._replace()

    def _replace(self) -> None:
        """A new consumer (fresh metadata, a new member); the old one is closed aside."""
        old, partitions = self.consumer, list(self.consumer.assignment())
        self._nudger.stopped.set()
        threading.Thread(target=old.close, kwargs={"timeout_ms": 5000}, daemon=True,
                         name="kafka-close-replaced").start()
        self.on_revoked(partitions)
        self.consumer = self._new_consumer()
        if self._topic is not None:
            self.subscribe(self._topic)

    def wedged(self) -> bool:
        """``poll()`` has not returned for ``WEDGED_AFTER_SECONDS`` (kafka-python's IO loop
        wedged, or the broker away for long): give this consumer up for a new one."""
        return time.monotonic() - self.last_progress > WEDGED_AFTER_SECONDS

    # -- what metrics and health read -------------------------------------------------------
    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    def highwater(self, tp: TopicPartition) -> int | None:
        high = self.consumer.highwater(tp)
        return None if high is None else int(high)

    def connections(self) -> int:
        return int(self.consumer.metrics().get("consumer-metrics", {}).get(
            "connection-count", 0))

    # -- ending ----------------------------------------------------------------------------
    def abandon(self) -> None:
        """Give this consumer up for a new one: it stops polling, and leaves the group in the
        background. A consumer left behind would go on heartbeating without ever rejoining,
        and every rebalance of the group would wait for it until the broker's rebalance
        timeout (minutes) — seen after a broker outage."""
        self.abandoned = True
        self._nudger.stopped.set()
        threading.Thread(target=self.consumer.close, kwargs={"timeout_ms": 5000},
                         daemon=True, name="kafka-close-abandoned").start()

    def close(self) -> None:
        self._nudger.stopped.set()
        if not self.abandoned:  # an abandoned consumer may be wedged: leave it to exit
            self.consumer.close()
