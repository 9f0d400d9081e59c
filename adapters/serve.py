"""Long-running roles: the Portal's and the CA's relays and inboxes over Kafka.

``--role portal`` runs the portal relay (requests, portal-events) and the portal
inbox (ca-events); ``--role ca`` runs the CA inbox (requests), the CA relay
(ca-events) and the expiry timer; ``--role all`` runs both. Single components
(``portal-relay``, ``portal-inbox``, ``ca-relay``, ``ca-inbox``) can run as
processes of their own. SIGTERM or SIGINT stops a role cleanly; SIGKILL loses
nothing either (positions are recorded with the effects).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

import psycopg
from eventsourcing.persistence import PersistenceError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random

from adapters.bootstrap import build_ca, build_portal, make_clock
from adapters.kafka_link.inbox import KafkaInbox
from adapters.kafka_link.topics import ensure_topics
from adapters.kafka_link.transport import ca_inbox, ca_relay, portal_inbox, portal_relay
from adapters.settings import Settings
from ca_core.ca import CertificateAuthority
from ca_core.portal import Portal

log = logging.getLogger("partner_ca.serve")

ROLES: dict[str, tuple[str, ...]] = {
    "portal": ("portal-relay", "portal-inbox"),
    "ca": ("ca-inbox", "ca-relay", "ca-expiry"),
    "all": ("portal-relay", "portal-inbox", "ca-inbox", "ca-relay", "ca-expiry"),
    "portal-relay": ("portal-relay",),
    "portal-inbox": ("portal-inbox",),
    "ca-relay": ("ca-relay",),
    "ca-inbox": ("ca-inbox", "ca-expiry"),
}


def _expiry_loop(ca: CertificateAuthority, interval: float) -> Callable[[threading.Event], None]:
    def run(stop: threading.Event) -> None:
        while not stop.wait(interval):
            try:
                expired = ca.expire_due()
                if expired:
                    log.info("recorded %d expiries", len(expired))
            except Exception:
                log.exception("expiry run failed; will try again")
    return run


WEDGED_AFTER_SECONDS = 30.0


def _replace_wedged(name: str, inbox: KafkaInbox, stop: threading.Event, portal: Portal | None,
                    ca: CertificateAuthority | None, settings: Settings) -> KafkaInbox:
    """Swap a consumer whose poll() stopped returning for a fresh one.

    kafka-python 3.0.12 occasionally wedges a consumer's IO loop (poll() never
    returns). Positions live in our own store, so a new consumer resumes exactly;
    the old one is abandoned and ignores anything it might still fetch.
    """
    log.error("%s: poll() has not returned for %.0f s (kafka-python IO loop wedged); "
              "starting a new consumer", name, time.monotonic() - inbox.last_progress)
    inbox.abandoned = True
    fresh = portal_inbox(portal, settings) if portal and name == "portal-inbox" else (
        ca_inbox(ca, settings) if ca else None)
    assert fresh is not None
    threading.Thread(target=fresh.run, args=(stop,), name=name, daemon=True).start()
    return fresh


def serve(role: str, settings: Settings, passphrase: str | None,
          stop: threading.Event | None = None) -> None:
    """Run a role until stopped."""
    if not settings.kafka_bootstrap:
        raise ValueError("serve needs PARTNER_CA_KAFKA_BOOTSTRAP (the broker address)")
    components = ROLES[role]
    stop = stop or threading.Event()
    ensure_topics(settings.kafka_bootstrap, settings.kafka_topic_prefix,
                  settings.kafka_partitions, settings.kafka_replication_factor)
    clock = make_clock(settings)
    portal: Portal | None = None
    ca: CertificateAuthority | None = None
    # Several roles starting at once race on CREATE TABLE IF NOT EXISTS in PostgreSQL
    # ("tuple concurrently updated"): try again a few times.
    opening = Retrying(stop=stop_after_attempt(5), wait=wait_random(0.2, 1.0),
                       retry=retry_if_exception_type((psycopg.Error, PersistenceError)),
                       reraise=True)
    if any(c.startswith("portal") for c in components):
        portal = opening(build_portal, settings, clock)
    if any(c.startswith("ca") for c in components):
        ca = opening(build_ca, settings, clock, passphrase)
        ca.authority()  # refuse to start before 'partner-ca init'
    runners: list[tuple[str, Callable[[threading.Event], None], Callable[[], None]]] = []
    for component in components:
        if component == "portal-relay" and portal:
            relay = opening(portal_relay, portal, settings)
            runners.append((component, relay.run, relay.producer.close))
        elif component == "portal-inbox" and portal:
            inbox = portal_inbox(portal, settings)
            runners.append((component, inbox.run, inbox.close))
        elif component == "ca-relay" and ca:
            relay = opening(ca_relay, ca, settings)
            runners.append((component, relay.run, relay.producer.close))
        elif component == "ca-inbox" and ca:
            inbox = ca_inbox(ca, settings)
            runners.append((component, inbox.run, inbox.close))
        elif component == "ca-expiry" and ca:
            runners.append((component, _expiry_loop(ca, settings.expiry_interval_seconds),
                            lambda: None))

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    threads = [threading.Thread(target=run, args=(stop,), name=name, daemon=True)
               for name, run, _ in runners]
    for thread in threads:
        thread.start()
    log.info("serving %s (%s) on %s", role, ", ".join(components), settings.kafka_bootstrap)
    inboxes = {name: close.__self__ for name, _, close in runners
               if isinstance(getattr(close, "__self__", None), KafkaInbox)}
    while not stop.wait(5.0):
        for name, inbox in list(inboxes.items()):
            if time.monotonic() - inbox.last_progress > WEDGED_AFTER_SECONDS:
                inboxes[name] = _replace_wedged(name, inbox, stop, portal, ca, settings)
    for thread in threads:
        thread.join(timeout=10)
    for _, _, close in runners:
        close()
    for inbox in inboxes.values():
        inbox.close()
    for app in (portal, ca):
        if app is not None:
            app.close()
