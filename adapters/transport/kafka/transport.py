"""Kafka as a Transport: both relays and both inboxes driven from one process (tests, tools).

``serve`` runs the same relays and inboxes in long-running threads and processes;
this class lets the shared transport contract tests drive them step by step.
"""

from __future__ import annotations

import time

from adapters.settings import Settings
from adapters.storage.persistence import position_recorder
from adapters.transport.kafka.inbox import KafkaInbox
from adapters.transport.kafka.relay import KafkaRelay, new_producer
from adapters.transport.kafka.topics import ensure_topics, topic_names
from ca_core.ca import CertificateAuthority
from ca_core.messages import (
    CA_EVENTS,
    CA_OUTBOX_TOPICS,
    PORTAL_OUTBOX_TOPICS,
    REQUESTS,
    ca_outbox,
    portal_outbox,
)
from ca_core.portal import Portal


def portal_relay(portal: Portal, settings: Settings) -> KafkaRelay:
    return KafkaRelay(portal, portal_outbox, PORTAL_OUTBOX_TOPICS,
                      new_producer(settings.kafka_bootstrap, "partner-ca-portal-relay"),
                      position_recorder(settings.store_url("portal"), settings.data_dir,
                                        "portal_relay"),
                      topic_names(settings.kafka_topic_prefix))


def ca_relay(ca: CertificateAuthority, settings: Settings) -> KafkaRelay:
    return KafkaRelay(ca, ca_outbox, CA_OUTBOX_TOPICS,
                      new_producer(settings.kafka_bootstrap, "partner-ca-ca-relay"),
                      position_recorder(settings.store_url("ca"), settings.data_dir, "ca_relay"),
                      topic_names(settings.kafka_topic_prefix))


def ca_inbox(ca: CertificateAuthority, settings: Settings) -> KafkaInbox:
    names = topic_names(settings.kafka_topic_prefix)
    return KafkaInbox(ca, names[REQUESTS], settings.kafka_bootstrap,
                      f"{settings.kafka_client_prefix}-ca-inbox",
                      (settings.kafka_inbox_worker_index, settings.kafka_inbox_workers))


def portal_inbox(portal: Portal, settings: Settings) -> KafkaInbox:
    names = topic_names(settings.kafka_topic_prefix)
    return KafkaInbox(portal, names[CA_EVENTS], settings.kafka_bootstrap,
                      f"{settings.kafka_client_prefix}-portal-inbox")


class KafkaTransport:
    """Relays and inboxes of both applications, pumped until nothing moves."""

    def __init__(self, portal: Portal, ca: CertificateAuthority, settings: Settings) -> None:
        ensure_topics(settings.kafka_bootstrap, settings.kafka_topic_prefix,
                      settings.kafka_partitions, settings.kafka_replication_factor)
        self.relays = [portal_relay(portal, settings), ca_relay(ca, settings)]
        self.inboxes = [ca_inbox(ca, settings), portal_inbox(portal, settings)]

    def pump(self, quiet_rounds: int = 3, timeout: float = 30.0) -> int:
        delivered, quiet = 0, 0
        deadline = time.monotonic() + timeout
        while quiet < quiet_rounds and time.monotonic() < deadline:
            moved = sum(relay.run_once() for relay in self.relays)
            handled = sum(inbox.poll_once(timeout_ms=100) for inbox in self.inboxes)
            delivered += handled
            settled = all(inbox.assigned for inbox in self.inboxes)
            quiet = quiet + 1 if settled and moved == 0 and handled == 0 else 0
        return delivered

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.close()
        for relay in self.relays:
            relay.producer.close()
