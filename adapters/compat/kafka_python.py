"""kafka-python (pinned: 3.0.12) past its public API, and what we rely on it doing.

- ``io_wakeup``: kafka-python 3.0.12 can lose a cross-thread wake-up, and its IO thread then
  sits in select() with no timeout while ``poll()`` waits on it
  (adapters/transport/kafka/consumer.py nudges it).
- ``rebalancing`` (from the public ``KafkaConsumer.group_metadata()``) and ``finish_join``
  (``KafkaConsumer._coordinator.poll``): a group join that several short ``poll()`` calls time
  out on may never complete — the member stays "rebalancing" with no partitions (reproduced
  in tests/integration/test_kafka_groups.py). So while a rebalance is under way our
  consumer (adapters/transport/kafka/consumer.py) drives the join alone with a long timeout,
  which returns as soon as the member has its assignment (a long ``poll()`` would also
  wait for records that may not come).
- ``join_abandoned`` / ``request_rejoin`` (``_coordinator._join_task``, ``request_rejoin``):
  a join that started inside a short ``poll()`` and finished after it returned is never
  applied; the consumer then asks for a new join at once instead of waiting for its 30 s
  stuck-rebalance watchdog.
- ``discard_failed_fetch`` (``_fetcher._next_partition_records`` and its siblings): when
  parsing a partition's fetched records raises (a record kafka-python cannot decode), the
  fetcher keeps that partition's spent record iterator as next in line, and the next
  ``poll()`` loops over it for ever, returning nothing and never fetching again
  (reproduced in tests/integration/test_kafka_security.py). The search for unreadable
  records (adapters/transport/kafka/unreadable.py) drops it after each such error, as
  kafka-python's own ``Fetcher.close`` does.
- ``TopicNotYetCreated``: kafka-python logs ERROR "Topic %s not found in cluster metadata"
  at every metadata refresh (ten times a second) while a topic it consumes does not exist —
  as ``ca-events`` does until a CA role first starts. The filter makes it one WARNING per
  topic a minute, saying why (``kafka.cluster``'s message text, checked by ``problems``).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

PINNED = "3.0.12"


def io_wakeup(consumer: Any) -> Callable[[], None] | None:
    """The consumer's IO loop wake-up (``KafkaConsumer._net.wakeup``), or None."""
    net = getattr(consumer, "_net", None)
    wakeup = getattr(net, "wakeup", None)
    return wakeup if callable(wakeup) else None


def rebalancing(consumer: Any) -> bool:
    """Whether the consumer is between JoinGroup and its assignment (a rebalance under way)."""
    return str(getattr(consumer.group_metadata(), "state", "")) == REBALANCING


def needs_join(consumer: Any) -> bool:
    """Whether the next poll would (re)join the group (``_coordinator.need_rejoin()``): the
    consumer then joins with ``finish_join`` first, so no short poll times out mid-join."""
    return bool(consumer._coordinator.need_rejoin())


def join_abandoned(consumer: Any) -> bool:
    """A join that finished on the IO thread after the ``poll()`` driving it had timed out:
    kafka-python 3.0.12 keeps the member "rebalancing" for ever. The coroutine that would
    apply the assignment (``join_group_async`` after the join task) has returned on its
    timeout; when the rejoin was asked for by a metadata change (new partitions, a topic
    that appeared after subscribing), performing the assignment also made ``need_rejoin()``
    false, so no later poll joins again. Seen: a CA inbox without partitions for 30 s after
    its topic's metadata arrived late (tests/integration/test_kafka_groups.py)."""
    coordinator = consumer._coordinator
    task = getattr(coordinator, "_join_task", None)
    return (rebalancing(consumer) and not coordinator.need_rejoin()
            and (task is None or bool(task.is_done)))


def request_rejoin(consumer: Any) -> None:
    """Ask the coordinator to join again (the next ``finish_join`` does, whole)."""
    consumer._coordinator.request_rejoin()


def finish_join(consumer: Any, timeout_ms: int) -> bool:
    """Drive the consumer's group join until it has its assignment or ``timeout_ms`` passed."""
    return bool(consumer._coordinator.poll(timeout_ms=timeout_ms))


def discard_failed_fetch(consumer: Any) -> None:
    """Drop the fetched records a failed parse left in line (and any parked by pausing,
    and the error saved for the next call): the next ``poll()`` fetches afresh from each
    partition's position."""
    fetcher = consumer._fetcher
    if fetcher._next_partition_records is not None:
        fetcher._next_partition_records.drain()
        fetcher._next_partition_records = None
    for parked in fetcher._paused_partition_records.values():
        parked.drain()
    fetcher._paused_partition_records.clear()
    fetcher._paused_completed_fetches.clear()
    fetcher._next_in_line_exception_metadata = None


#: how ``MemberState.REBALANCING`` prints in kafka-python 3.0.12
REBALANCING = "<rebalancing>"
#: kafka.cluster's message for a topic the broker does not have (kafka-python 3.0.12)
TOPIC_NOT_FOUND = "Topic %s not found in cluster metadata"


class TopicNotYetCreated(logging.Filter):
    """One WARNING per topic a minute instead of kafka-python's ERROR at every refresh."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self.said: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != TOPIC_NOT_FOUND or not record.args:
            return True
        topic = str(record.args[0] if isinstance(record.args, tuple) else record.args)
        now = time.monotonic()
        if now - self.said.get(topic, -self.every) < self.every:
            return False
        self.said[topic] = now
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = ("Topic %s does not exist yet (its publisher creates it when it first "
                      "starts); consuming it from then on")
        return True


def quiet_missing_topics() -> None:
    """Install ``TopicNotYetCreated`` on kafka-python's cluster logger (once)."""
    cluster = logging.getLogger("kafka.cluster")
    if not any(isinstance(f, TopicNotYetCreated) for f in cluster.filters):
        cluster.addFilter(TopicNotYetCreated())


def problems() -> list[str]:
    found = []
    if version("kafka-python") != PINNED:
        found.append(f"kafka-python {version('kafka-python')} is installed, not {PINNED}: "
                     "check whether the lost wake-up is fixed and the nudger can go")
    # here, not at the top: the rest of this module names kafka-python's parts on objects it
    # is handed, and importing the package costs start-up time to processes without Kafka
    import kafka.cluster
    from kafka import KafkaConsumer

    if TOPIC_NOT_FOUND not in inspect.getsource(kafka.cluster):
        found.append("kafka.cluster no longer logs 'Topic %s not found in cluster metadata'")
    consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:9", api_version=(2, 0))
    try:
        if io_wakeup(consumer) is None:
            found.append("KafkaConsumer has no _net.wakeup any more")
        from kafka.coordinator.base import MemberState

        if not hasattr(getattr(consumer, "_coordinator", None), "_join_task"):
            found.append("KafkaConsumer._coordinator has no _join_task any more")
        for method in ("poll", "need_rejoin", "request_rejoin"):
            if not callable(getattr(getattr(consumer, "_coordinator", None), method, None)):
                found.append(f"KafkaConsumer has no _coordinator.{method} any more")

        fetcher = getattr(consumer, "_fetcher", None)
        for attribute in ("_next_partition_records", "_paused_partition_records",
                          "_paused_completed_fetches", "_next_in_line_exception_metadata"):
            if not hasattr(fetcher, attribute):
                found.append(f"KafkaConsumer._fetcher has no {attribute} any more")

        if str(MemberState.REBALANCING) != REBALANCING:
            found.append(f"MemberState.REBALANCING prints as {MemberState.REBALANCING!s}")
    finally:
        consumer.close()
    return found
