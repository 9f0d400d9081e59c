"""Long-running roles: the Portal's and the CA's relays and inboxes over Kafka.

``--role portal`` runs the portal relay (requests, portal-events) and the portal
inbox (ca-events); ``--role ca`` runs the CA inbox (requests), the CA relay
(ca-events) and the expiry timer; ``--role all`` runs both. Single components
(``portal-relay``, ``portal-inbox``, ``ca-relay``, ``ca-inbox``) can run as
processes of their own. ``--role ocsp`` and ``--role crl`` serve relying parties
over HTTP (adapters/relying.py) and need no broker. SIGTERM or SIGINT stops a role cleanly; SIGKILL loses
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
from adapters.kafka_link.relay import KafkaRelay
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


def _start_inbox(name: str, inbox: KafkaInbox, stop: threading.Event) -> KafkaInbox:
    threading.Thread(target=inbox.run, args=(stop,), name=name, daemon=True).start()
    return inbox


#: HTTP roles for relying parties (adapters/relying.py); they need no broker.
HTTP_ROLES = ("ocsp", "crl")


def _on_signals(stop: threading.Event) -> None:
    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)


def serve(role: str, settings: Settings, passphrase: str | None,
          stop: threading.Event | None = None) -> None:
    """Run a role until stopped."""
    if role in HTTP_ROLES:
        from adapters.migrate import apply_migrations
        from adapters.relying import serve_relying

        stop = stop or threading.Event()
        apply_migrations(settings.store_url("ca"))
        ca = build_ca(settings, make_clock(settings), passphrase)
        ca.authority()  # refuse to start before 'partner-ca init'
        _on_signals(stop)
        try:
            serve_relying(role, settings, ca, stop, passphrase)
        finally:
            ca.close()
        return
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
    new_inbox: dict[str, Callable[[], KafkaInbox]] = {}
    relays: dict[str, KafkaRelay] = {}
    if portal is not None:
        new_inbox["portal-inbox"] = lambda: portal_inbox(portal, settings)
        if "portal-relay" in components:
            relays["portal-relay"] = opening(portal_relay, portal, settings)
    if ca is not None:
        new_inbox["ca-inbox"] = lambda: ca_inbox(ca, settings)
        if "ca-relay" in components:
            relays["ca-relay"] = opening(ca_relay, ca, settings)

    _on_signals(stop)
    threads: list[threading.Thread] = []
    for name in components:
        if name in relays:
            threads.append(threading.Thread(target=relays[name].run, args=(stop,), name=name,
                                            daemon=True))
        elif name == "ca-expiry" and ca is not None:
            threads.append(threading.Thread(
                target=_expiry_loop(ca, settings.expiry_interval_seconds), args=(stop,),
                name=name, daemon=True))
    for thread in threads:
        thread.start()
    inboxes = {name: _start_inbox(name, new_inbox[name](), stop)
               for name in components if name in new_inbox}
    log.info("serving %s (%s) on %s", role, ", ".join(components), settings.kafka_bootstrap)
    while not stop.wait(5.0):
        for name, inbox in list(inboxes.items()):
            if time.monotonic() - inbox.last_progress > WEDGED_AFTER_SECONDS:
                # kafka-python 3.0.12 occasionally wedges a consumer's IO loop (poll() never
                # returns). Positions live in our store, so a new consumer resumes exactly;
                # the old one is abandoned and ignores anything it might still fetch.
                log.error("%s: poll() has not returned for %.0f s (kafka-python IO loop "
                          "wedged); starting a new consumer", name,
                          time.monotonic() - inbox.last_progress)
                inbox.abandoned = True
                inboxes[name] = _start_inbox(name, new_inbox[name](), stop)
    for thread in threads:
        thread.join(timeout=10)
    for inbox in inboxes.values():
        inbox.close()
    for relay in relays.values():
        relay.producer.close()
    for app in (portal, ca):
        if app is not None:
            app.close()
