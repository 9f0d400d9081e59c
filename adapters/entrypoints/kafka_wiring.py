"""The Kafka parts wired from the settings (the wiring room: nothing below the entrypoints
reads ``Settings``): each role's credentials, relays, inboxes and topics, and Kafka as a
Transport — both relays and both inboxes driven from one process (tests, tools).

``serve`` runs the same relays and inboxes in long-running threads and processes;
``KafkaTransport`` lets the shared transport contract tests drive them step by step.
"""

from __future__ import annotations

import time

from adapters.settings import Settings
from adapters.storage.persistence import position_recorder
from adapters.transport.kafka.inbox import KafkaInbox, group_id
from adapters.transport.kafka.relay import KafkaRelay, new_producer
from adapters.transport.kafka.security import PUBLISHER, RoleCredentials, role_credentials
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

#: the topics each application role publishes (and may create)
PUBLISHES = {role: tuple(t for t, r in PUBLISHER.items() if r == role) for role in ("portal", "ca")}


def credentials(settings: Settings, role: str, signs: bool = False) -> RoleCredentials:
    """The credentials of one role from PARTNER_CA_KAFKA_CREDENTIALS (a process reads only
    the folders of the roles it runs)."""
    return role_credentials(settings.kafka_credentials, role, signs=signs)


def portal_relay(portal: Portal, settings: Settings) -> KafkaRelay:
    creds = credentials(settings, "portal", signs=True)
    return KafkaRelay(portal, portal_outbox, PORTAL_OUTBOX_TOPICS,
                      new_producer(settings.kafka_bootstrap, "partner-ca-portal-relay",
                                   creds.client_options),
                      position_recorder(settings.store_url("portal"), settings.data_dir,
                                        "portal_relay"),
                      topic_names(settings.kafka_topic_prefix), creds.signer())


def ca_relay(ca: CertificateAuthority, settings: Settings) -> KafkaRelay:
    creds = credentials(settings, "ca", signs=True)
    return KafkaRelay(ca, ca_outbox, CA_OUTBOX_TOPICS,
                      new_producer(settings.kafka_bootstrap, "partner-ca-ca-relay",
                                   creds.client_options),
                      position_recorder(settings.store_url("ca"), settings.data_dir, "ca_relay"),
                      topic_names(settings.kafka_topic_prefix), creds.signer())


def ca_inbox(ca: CertificateAuthority, settings: Settings) -> KafkaInbox:
    names = topic_names(settings.kafka_topic_prefix)
    creds = credentials(settings, "ca")
    return KafkaInbox(ca, names[REQUESTS], settings.kafka_bootstrap,
                      f"{settings.kafka_client_prefix}-ca-inbox", logical=REQUESTS,
                      verifier=creds.verifier(), security=creds.client_options,
                      group=group_id(settings.kafka_topic_prefix, ca.name))


def portal_inbox(portal: Portal, settings: Settings) -> KafkaInbox:
    names = topic_names(settings.kafka_topic_prefix)
    creds = credentials(settings, "portal")
    return KafkaInbox(portal, names[CA_EVENTS], settings.kafka_bootstrap,
                      f"{settings.kafka_client_prefix}-portal-inbox", logical=CA_EVENTS,
                      verifier=creds.verifier(), security=creds.client_options,
                      group=group_id(settings.kafka_topic_prefix, portal.name))


def ensure_role_topics(settings: Settings, role: str) -> None:
    """The topics ``role`` publishes (the ACLs let it create those only)."""
    ensure_topics(settings.kafka_bootstrap, settings.kafka_topic_prefix,
                  settings.kafka_partitions, settings.kafka_replication_factor,
                  credentials(settings, role).client_options, PUBLISHES[role])


class KafkaTransport:
    """Relays and inboxes of both applications, pumped until nothing moves."""

    def __init__(self, portal: Portal, ca: CertificateAuthority, settings: Settings) -> None:
        for role in PUBLISHES:
            ensure_role_topics(settings, role)
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
