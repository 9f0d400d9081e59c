"""The inboxes' consumer groups on the real, secured broker (issue 19).

kafka-python 3.0.12 leaves a group join unfinished for ever when the ``poll()`` calls that drive
it keep timing out before it completes: the member stays "rebalancing" with no partitions (seen
in the fault tests as a CA worker that never got an assignment). The first test shows the
library doing so — when it stops failing that way, kafka-python has fixed it and the inbox's
finish_join during a rebalance (adapters/transport/kafka/consumer.py) can go; the others show that
the inbox gets its partitions anyway, starts each at the position in *our* store, and hands
them over when members come and go.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer

from adapters.compat.kafka_python import join_abandoned, rebalancing
from adapters.transport.kafka.consumer import STUCK_REBALANCE_SECONDS
from adapters.transport.kafka.inbox import KafkaInbox, group_id, source_name
from adapters.transport.kafka.security import role_credentials
from adapters.transport.kafka.topics import ensure_topics, topic_names
from ca_core.messages import REQUESTS
from tests.support import KAFKA_CREDENTIALS, grant_kafka

PARTITIONS = 4


class _Recorder:
    def __init__(self, positions: dict[str, int]) -> None:
        self.positions = positions

    def max_tracking_id(self, source: str) -> int | None:
        return self.positions.get(source)


class _App:
    """Just what an inbox asks of its application before any record arrives."""

    name = "ca"

    def __init__(self, positions: dict[str, int] | None = None) -> None:
        self.recorder = _Recorder(positions or {})


@pytest.fixture
def requests_topic(kafka_bootstrap: str) -> tuple[str, str]:
    """A fresh prefix's ``requests`` topic (PARTITIONS partitions) and the CA's group id."""
    prefix = f"g{uuid.uuid4().hex[:10]}."
    grant_kafka(kafka_bootstrap, prefix)
    ensure_topics(kafka_bootstrap, prefix, PARTITIONS, 1,
                  role_credentials(KAFKA_CREDENTIALS, "portal").client_options, (REQUESTS,))
    return topic_names(prefix)[REQUESTS], group_id(prefix, "ca")


def _inbox(bootstrap: str, topic: str, group: str, app: Any = None) -> KafkaInbox:
    creds = role_credentials(KAFKA_CREDENTIALS, "ca")
    return KafkaInbox(app or _App(), topic, bootstrap, f"test-{uuid.uuid4().hex[:6]}",
                      logical=REQUESTS, verifier=creds.verifier(),
                      security=creds.client_options, group=group)


def _partitions(inbox: KafkaInbox) -> set[int]:
    return {tp.partition for tp in inbox.consumer.assignment()}


def test_kafka_python_leaves_a_join_unfinished_when_short_polls_time_out(
        kafka_bootstrap: str, requests_topic: tuple[str, str]) -> None:
    topic, group = requests_topic
    wedged = 0
    for attempt in range(3):
        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"{group}",
                                 client_id=f"bare-{attempt}", enable_auto_commit=False,
                                 session_timeout_ms=10_000, heartbeat_interval_ms=2_000,
                                 **role_credentials(KAFKA_CREDENTIALS, "ca").client_options)
        consumer.subscribe([topic])
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not consumer.assignment():
            consumer.poll(timeout_ms=1)
        wedged += not consumer.assignment() and rebalancing(consumer)
        consumer.close(timeout_ms=5000)
    assert wedged, ("every join finished under 1 ms polls: kafka-python no longer loses "
                    "them; the inbox's finish_join workaround may go")


def test_an_inbox_gets_its_partitions_even_when_polled_with_short_timeouts(
        kafka_bootstrap: str, requests_topic: tuple[str, str]) -> None:
    topic, group = requests_topic
    for _ in range(3):
        inbox = _inbox(kafka_bootstrap, topic, group)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(_partitions(inbox)) < PARTITIONS:
                inbox.poll_once(timeout_ms=1)
            assert _partitions(inbox) == set(range(PARTITIONS))
        finally:
            inbox.close()


class _Polling:
    """An inbox polled in a thread of its own, as ``serve`` runs it."""

    def __init__(self, inbox: KafkaInbox) -> None:
        self.inbox = inbox
        self.stop = threading.Event()
        self.thread = threading.Thread(target=inbox.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.inbox.close()


def _until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_partitions_spread_over_a_newcomer_and_move_back_when_it_leaves(
        kafka_bootstrap: str, requests_topic: tuple[str, str]) -> None:
    topic, group = requests_topic
    # our store says where each partition resumes; Kafka's committed offsets play no part
    positions = {source_name(topic, p): 0 for p in range(PARTITIONS)}
    first = _Polling(_inbox(kafka_bootstrap, topic, group, _App(positions)))
    second = None
    try:
        _until(lambda: _partitions(first.inbox) == set(range(PARTITIONS)), "the first member")
        second = _Polling(_inbox(kafka_bootstrap, topic, group, _App(positions)))
        _until(lambda: (len(_partitions(first.inbox)) == len(_partitions(second.inbox)) == 2
                        and not _partitions(first.inbox) & _partitions(second.inbox)),
               "the partitions spread over both")
        moved = _partitions(second.inbox)
        second.close()  # it leaves: its partitions go back to the first
        _until(lambda: _partitions(first.inbox) == set(range(PARTITIONS)), "the survivor")
        # each partition the survivor took over was read afresh from the store
        assert {tp.partition for tp in first.inbox.tracked} >= moved
    finally:
        first.close()
        if second is not None and not second.stop.is_set():
            second.close()


def test_another_principal_cannot_join_the_ca_inbox_group(
        kafka_bootstrap: str, requests_topic: tuple[str, str]) -> None:
    """An attacker with the reader's or the portal's credentials joining ``<prefix>ca-inbox``
    would take partitions away from the CA workers: the group ACL refuses the join."""
    from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    topic, group = requests_topic
    ca_events = topic.removesuffix("requests") + "ca-events"
    for role in ("reader", "portal"):
        intruder = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                                 client_id=f"intruder-{role}", enable_auto_commit=False,
                                 **role_credentials(KAFKA_CREDENTIALS, role).client_options)
        intruder.subscribe([ca_events])  # a topic the intruder may read
        try:
            with pytest.raises((GroupAuthorizationFailedError, TopicAuthorizationFailedError)):
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    intruder.poll(timeout_ms=500)
            assert not intruder.assignment()
        finally:
            intruder.close(timeout_ms=5000)


def test_a_join_a_short_poll_gave_up_on_is_left_unapplied_and_the_inbox_joins_again(
        kafka_bootstrap: str, requests_topic: tuple[str, str]) -> None:
    """Seen in CI: a topic's metadata arrived while a 100 ms poll ran; the rejoin it caused
    finished after the poll returned, and kafka-python 3.0.12 never applied it — the CA inbox
    sat "rebalancing" without partitions until its 30 s watchdog. Here the same state is made
    on purpose (the metadata snapshot the assignment was made from is marked stale, then one
    1 ms poll starts the rejoin); the first assertion fails once the library applies such
    joins, and the inbox must get its partitions back at once, not after 30 s."""
    topic, group = requests_topic
    inbox = _inbox(kafka_bootstrap, topic, group)
    try:
        _until(lambda: inbox.poll_once(timeout_ms=1) >= 0 and
               _partitions(inbox) == set(range(PARTITIONS)), "the first assignment")
        consumer = inbox.consumer
        consumer._coordinator._assignment_snapshot = {}  # "the metadata changed"
        consumer.poll(timeout_ms=1)  # the rejoin starts here and outlives this poll
        _until(lambda: join_abandoned(consumer), "the join to finish unapplied", timeout=10)
        assert rebalancing(consumer)
        again = time.monotonic()
        _until(lambda: inbox.poll_once(timeout_ms=1) >= 0 and not rebalancing(consumer) and
               _partitions(inbox) == set(range(PARTITIONS)), "the join applied",
               timeout=STUCK_REBALANCE_SECONDS)
        assert time.monotonic() - again < 5, "waited for the stuck-rebalance watchdog"
        assert inbox.consumer is consumer  # joined again, not replaced
    finally:
        inbox.close()
