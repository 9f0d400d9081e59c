"""Records kafka-python cannot parse, found so that a consumer can go on after them.

A header key that is not UTF-8 (the broker does not check them), a batch in a codec
kafka-python has no library for, a CRC that fails: ``poll()`` raises at the same offset on
every fetch, and kafka-python 3.0.12 then spins in the next ``poll()`` for ever (the spent
fetch it keeps in line, dropped by ``discard_failed_fetch``). ``find_unreadable`` reads each
assigned partition alone from where its consumer has handled everything before, finds the
partition and the first offset that raise, and where records read again: the broker sends
batches whole, so one unreadable record makes its whole batch unreadable (a few single-
partition fetches, doubling then halving). The CA and portal inboxes record what it finds as
one ``MessageRejected``; ``audit fetch-heads`` skips it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordError, UnsupportedCodecError

from adapters.compat.kafka_python import discard_failed_fetch

#: What kafka-python's poll() raises for records it cannot parse.
UNREADABLE = (CorruptRecordError, UnsupportedCodecError)
#: How long one look at a single partition may take.
PROBE_SECONDS = 10.0


@dataclass(frozen=True)
class Unreadable:
    """Offsets ``first`` up to (not including) ``end`` of ``partition`` cannot be read."""

    partition: TopicPartition
    first: int
    end: int


def find_unreadable(consumer: KafkaConsumer,
                    handled_up_to: Callable[[TopicPartition], int]) -> Unreadable | None:
    """After ``poll()`` raised one of UNREADABLE: the unreadable records that start right
    at a partition's ``handled_up_to`` (the next offset its consumer has not handled), or
    None — none raises again when read alone (a CRC broken on the way), or readable records
    come first (``poll()`` hands those out before it raises; handle them, then ask again).
    The caller seeks every partition back to where it goes on from."""
    discard_failed_fetch(consumer)
    partitions = sorted(consumer.assignment())
    try:
        for tp in partitions:
            consumer.pause(*[p for p in partitions if p != tp])
            consumer.resume(tp)
            start = handled_up_to(tp)
            first = _first_unreadable(consumer, tp, start)
            if first is not None and first == start:
                return Unreadable(tp, first, _readable_again(consumer, tp, first))
        return None
    finally:
        consumer.resume(*partitions)


def _first_unreadable(consumer: KafkaConsumer, tp: TopicPartition, start: int) -> int | None:
    """Read ``tp`` (alone) from ``start`` up to its end: the offset kafka-python raises at,
    or None if it reads through."""
    consumer.seek(tp, start)
    deadline = time.monotonic() + PROBE_SECONDS
    while time.monotonic() < deadline:
        try:
            consumer.poll(timeout_ms=500)
        except UNREADABLE:
            discard_failed_fetch(consumer)
            return int(consumer.position(tp))
        end = consumer.highwater(tp)
        if end is not None and consumer.position(tp) >= end:
            return None
    return None


def _readable(consumer: KafkaConsumer, tp: TopicPartition, offset: int) -> bool:
    """Does reading ``tp`` from ``offset`` (below its end) give records rather than raise?
    (Nothing within PROBE_SECONDS counts as readable: skip no more than is known.)"""
    consumer.seek(tp, offset)
    deadline = time.monotonic() + PROBE_SECONDS
    while time.monotonic() < deadline:
        try:
            if consumer.poll(timeout_ms=500, max_records=1).get(tp):
                return True
        except UNREADABLE:
            discard_failed_fetch(consumer)
            return False
    return True


def _readable_again(consumer: KafkaConsumer, tp: TopicPartition, first: int) -> int:
    """The lowest offset after ``first`` (unreadable) from which ``tp`` reads again, or its
    end. (No look past the end: the consumer would reset to the earliest offset.)"""
    end = int(consumer.end_offsets([tp], timeout_ms=5000)[tp])
    low, step = first, 1
    while first + step < end and not _readable(consumer, tp, first + step):
        low, step = first + step, step * 2
    high = min(first + step, end)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _readable(consumer, tp, middle) else (middle, high)
    return max(high, first + 1)
