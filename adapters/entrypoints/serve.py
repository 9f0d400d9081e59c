"""Long-running roles: the Portal's and the CA's relays and inboxes over Kafka.

``--role portal`` runs the portal relay (requests, portal-events) and the portal
inbox (ca-events); ``--role ca`` runs the CA inbox (requests), the CA relay
(ca-events) and the expiry timer; ``--role all`` runs both. Single components
(``portal-relay``, ``portal-inbox``, ``ca-relay``, ``ca-inbox``) can run as
processes of their own. ``--role ocsp`` and ``--role crl`` serve relying parties
over HTTP (adapters/relying/) and need no broker, no CA key and no passphrase.
SIGTERM or SIGINT stops a role cleanly; SIGKILL loses nothing either (positions are
recorded with the effects).

This is the wiring room for the long-running roles (about 470 lines, one reason to change:
which role runs which component, and how they start and stop): the role table, the leases
of the singletons, the broker connections made in the background, the watchdog that replaces
a wedged consumer, and the /metrics checks of each role. What each component does is in
its own module. Imports inside the functions are on purpose: a role imports only the code
of the components it runs (no CA role code, and none of the secrets it reads, in a portal
process), and starts sooner.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from adapters.compat.kafka_python import quiet_missing_topics
from adapters.entrypoints.bootstrap import build_ca, build_portal, make_clock
from adapters.entrypoints.kafka_wiring import (
    ca_inbox,
    ca_relay,
    credentials,
    ensure_role_topics,
    portal_inbox,
    portal_relay,
)
from adapters.periodic import run_periodically
from adapters.settings import Settings
from adapters.storage.migrate import apply_migrations
from adapters.storage.persistence import opening as open_retrying
from adapters.transport.kafka.inbox import KafkaInbox
from adapters.transport.kafka.relay import KafkaRelay
from ca_core.ca import CertificateAuthority
from ca_core.portal import Portal

log = logging.getLogger("partner_ca.serve")

ROLES: dict[str, tuple[str, ...]] = {
    "portal": ("portal-relay", "portal-inbox", "portal-api", "notifier"),
    "ca": ("ca-inbox", "ca-relay", "ca-expiry", "ca-publish"),
    "all": ("portal-relay", "portal-inbox", "portal-api", "notifier", "ca-inbox", "ca-relay",
            "ca-expiry", "ca-publish"),
    "portal-relay": ("portal-relay",),
    "portal-inbox": ("portal-inbox",),
    "portal-api": ("portal-api",),
    "notifier": ("notifier",),
    "ca-relay": ("ca-relay",),
    "ca-inbox": ("ca-inbox", "ca-expiry", "ca-publish"),
}
#: Without a broker: both applications in one process, linked in-process (the pump, the expiry
#: timer and the CA's publishing always run), and of the components above only these
#: (``ca``: no portal API). The one table of what an embedded role runs.
EMBEDDED: dict[str, tuple[str, ...]] = {
    "portal": ("portal-api", "notifier"), "all": ("portal-api", "notifier"), "ca": (),
    "portal-api": ("portal-api",), "notifier": ("notifier",)}
EMBEDDED_ROLES = tuple(EMBEDDED)


def _expiry_loop(ca: CertificateAuthority, interval: float) -> Callable[[threading.Event], None]:
    def step() -> None:
        expired = ca.expire_due()
        if expired:
            log.info("recorded %d expiries", len(expired))

    return lambda stop: run_periodically("expiry run", step, stop, log, interval=interval,
                                         first_wait=interval)


#: seconds between tries to reach the broker: doubling from the first to the last
CONNECT_WAIT = (1.0, 30.0)

T = TypeVar("T")


def until_built(what: str, make: Callable[[], T], stop: threading.Event) -> T | None:
    """``make()`` once the broker answers, however long it is away (None: stopped first).

    Every role reconnects by itself (issue 26, item 13): a broker outage, or a role started
    while the broker is down, is waited out with one WARNING per try — never an exit."""
    wait = CONNECT_WAIT[0]
    while not stop.is_set():
        try:
            return make()
        except Exception as exc:  # noqa: BLE001 - unreachable, timed out, refused: try again
            log.warning("%s: cannot reach the broker yet (%s: %s); trying again in %.0f s",
                        what, type(exc).__name__, str(exc)[:200], wait)
        stop.wait(wait)
        wait = min(wait * 2, CONNECT_WAIT[1])
    return None


def _with_topics(settings: Settings, role: str, make: Callable[[], T]) -> T:
    ensure_role_topics(settings, role)  # the topics this role publishes, created if missing
    return make()


def _relay_runner(name: str, make: Callable[[], KafkaRelay],
                  relays: dict[str, KafkaRelay]) -> Runner:
    """A relay built when the broker answers (the log is the outbox: nothing waits for it)."""
    def run(stop: threading.Event) -> None:
        relay = relays.get(name) or until_built(name, make, stop)
        if relay is not None:
            relays[name] = relay
            relay.run(stop)
    return run


def _connect_inbox(name: str, make: Callable[[], KafkaInbox], inboxes: dict[str, KafkaInbox],
                   stop: threading.Event) -> None:
    """Build an inbox in the background (as long as the broker is away), then run it."""
    def run() -> None:
        inbox = until_built(name, make, stop)
        if inbox is None:
            return
        inboxes[name] = inbox
        inbox.run(stop)

    threading.Thread(target=run, name=name, daemon=True).start()


#: HTTP roles for relying parties (adapters/relying/crl_http.py); they need no broker.
HTTP_ROLES = ("ocsp", "crl")


def _on_signals(stop: threading.Event) -> None:
    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)


#: a long-running component: runs until the event is set
Runner = Callable[[threading.Event], None]


def _threads(runs: list[tuple[str, Runner]], stop: threading.Event) -> list[threading.Thread]:
    return [threading.Thread(target=run, args=(stop,), name=name, daemon=True)
            for name, run in runs]


def _checkpoints(app: Any, settings: Settings, passphrase: str | None,
                 holds_ca_keys: bool) -> list[tuple[str, Runner]]:
    """Periodic signed tree heads over ``app``'s log, with the audit key alone: from its own
    store (PARTNER_CA_AUDIT_KEY_PASSPHRASE), else — only in a process that ``holds_ca_keys``
    anyway — from the CA key store. A portal never needs the CA passphrase for this."""
    if settings.audit_checkpoint_seconds <= 0:
        return []
    from adapters.audit.tree_heads import run_checkpoints
    from adapters.entrypoints.bootstrap import audit_key_store, key_store

    keys = audit_key_store(settings, key_store(settings, passphrase) if holds_ca_keys
                           else None)
    if keys is None:
        log.warning("%s: no audit key passphrase (PARTNER_CA_AUDIT_KEY_PASSPHRASE), so no "
                    "signed tree heads from this process", app.name)
        return []

    def run(stop: threading.Event) -> None:
        run_checkpoints(app, keys, settings.data_dir, settings.audit_checkpoint_seconds, stop)

    return [(f"{app.name}-checkpoint", run)]


def _notifier(components: tuple[str, ...], portal: Portal,
              settings: Settings) -> list[tuple[str, Runner]]:
    """The e-mail notifier, when the role has it."""
    if "notifier" in components and (settings.notifier_in_portal or components == ("notifier",)):
        from adapters.entrypoints.mail_wiring import run_notifier

        return [("notifier", lambda stop: run_notifier(portal, settings, stop))]
    return []


def _leased(name: str, app_name: str, run: Runner, settings: Settings,
            stop: threading.Event) -> threading.Thread:
    """``run`` in whichever of the role's processes holds the lease ``name``."""
    from adapters.storage.lease import Lease, run_while_holding

    lease = Lease(name, settings.store_url(app_name), settings.data_dir)
    return threading.Thread(target=run_while_holding, args=(lease, [(name, run)], stop),
                            name=f"{name}-lease", daemon=True)


def _portal_threads(components: tuple[str, ...], portal: Portal, settings: Settings,
                    stop: threading.Event, ca: Any = None) -> list[threading.Thread]:
    """The portal's HTTP API, when the role has it; the auditor pages read the CA's log too
    where this process has it (embedded)."""
    threads = []
    if "portal-api" in components and settings.portal_listen:
        import uvicorn

        from adapters.compat.uvicorn import bounded_config
        from adapters.portal.app import portal_api
        from adapters.portal.http.limits import ATTEMPTS_PER_ADDRESS, ATTEMPTS_WINDOW
        from adapters.portal.ops_auth import OpsTokens
        from adapters.sockets import listening_socket, serve_until
        from adapters.storage.attempts import shared_attempts

        # attempts per client address, counted in the portal's store: every process shares them
        api = portal_api(portal, ops_tokens=OpsTokens(settings.data_dir / "ops-tokens.json"),
                         trusted_proxies=settings.portal_trusted_proxies,
                         api_docs=settings.portal_api_docs,
                         otp_refusal_seconds=settings.otp_refusal_seconds,
                         audit_apps=(lambda: [portal, ca]) if ca is not None else None,
                         attempts=shared_attempts(settings.store_url("portal"),
                                                  settings.data_dir, ATTEMPTS_PER_ADDRESS,
                                                  ATTEMPTS_WINDOW))
        # access log off: URLs carry pickup tokens; proxy headers are judged by the API
        # itself against PARTNER_CA_PORTAL_TRUSTED_PROXIES (uvicorn would trust 127.0.0.1)
        server = uvicorn.Server(bounded_config(api, proxy_headers=False,
                                               **settings.http_limits()))
        sock = listening_socket(settings.portal_listen)

        threads.append(threading.Thread(target=serve_until, name="portal-api", daemon=True,
                                        args=(server, sock, stop, "portal-api-http",
                                              "portal API")))
    return threads


def _observed(settings: Settings, stop: threading.Event, portal: Portal | None,
              ca: CertificateAuthority | None, relays: dict[str, Any] | None = None,
              inboxes: dict[str, Any] | None = None, count: bool = True,
              expected: list[str] | None = None) -> None:
    """Metrics from what this process records; /metrics, /healthz, /readyz when
    PARTNER_CA_METRICS_LISTEN is set (adapters/observability.py)."""
    from adapters.observability import (
        Gauges,
        crl_age,
        lag_check,
        observe,
        oldest_ocsp_response,
        serve_ops,
        store_check,
        view_lag,
    )
    from adapters.storage.crl_files import served_crl
    from adapters.storage.persistence import ocsp_store, status_view

    if count:
        for app in (portal, ca):
            if app is not None:
                observe(app)
    if not settings.metrics_listen:
        return
    checks = []
    gauges = Gauges()
    for app in (portal, ca):
        if app is not None:
            checks.append(store_check(app))
    if ca is not None:
        if ca.keys is not None:
            checks.append(("ca-keys", ca.hierarchy.unlock))  # the issuing keys open (file or token)
        gauges.add("partner_ca_crl_age_seconds", "Seconds since the served CRL's thisUpdate",
                   crl_age(served_crl(settings.data_dir)))
        # the views' stores are opened at the first scrape, not here: the roles starting
        # at once would race on creating their tables
        gauges.add("partner_ca_ocsp_oldest_response_age_seconds",
                   "Seconds since the oldest pre-signed OCSP response was signed",
                   oldest_ocsp_response(lambda: ocsp_store(settings.store_url("ca"),
                                                           settings.data_dir)))
        lag = view_lag(lambda: status_view(settings.store_url("ca"), settings.data_dir), ca)
        gauges.add("partner_ca_status_view_lag",
                   "CA log positions the revocation-status view has not read", lag)
        checks.append(lag_check("status-view", lag, settings.ready_lag_bound))
    # relays and inboxes connect in the background: looked up at each scrape
    names = expected if expected is not None else [*(relays or {}), *(inboxes or {})]
    for name in [n for n in names if n.endswith("-relay")]:
        def backlog(name: str = name) -> float:
            relay = (relays or {}).get(name)
            return float(relay.backlog()) if relay is not None else 0.0

        gauges.add(f"partner_ca_{name.replace('-', '_')}_backlog",
                   f"Log positions the {name} has not yet published", backlog)
    for name in [n for n in names if n.endswith("-inbox")]:
        def inbox_lag(name: str = name) -> float:
            inbox = (inboxes or {}).get(name)
            return float(inbox.lag()) if inbox is not None else 0.0

        def broker(name: str = name) -> None:
            inbox = (inboxes or {}).get(name)
            if inbox is None:
                raise RuntimeError("not connected to a broker yet")
            if not inbox.reader.connections():
                raise RuntimeError("no connection to a broker")
            if inbox.reader.wedged():
                raise RuntimeError("poll() has not returned lately")

        gauges.add(f"partner_ca_{name.replace('-', '_')}_lag",
                   f"Records on the {name}'s partitions not yet applied", inbox_lag)
        checks.append((f"{name}-broker", broker))
        checks.append(lag_check(f"{name}-lag", inbox_lag, settings.ready_lag_bound))
    serve_ops(settings.metrics_listen, settings.http_limits(), checks, stop, gauges)


def _serve_embedded(role: str, settings: Settings, passphrase: str | None,
                    stop: threading.Event) -> None:
    """Without a broker: both applications in this process, linked in-process; the portal's
    API and notifier serve, the transport is pumped and expiries recorded in the background."""
    from adapters.entrypoints.bootstrap import build

    if role not in EMBEDDED_ROLES:
        raise ValueError(f"--role {role} needs PARTNER_CA_KAFKA_BOOTSTRAP (the broker address)")
    apply_migrations(settings.store_url("ca"))
    if settings.store_url("portal") != settings.store_url("ca"):
        apply_migrations(settings.store_url("portal"))
    system = build(settings, make_clock(settings), passphrase, transport="in-process")
    system.ca.authority()  # refuse to start before 'partner-ca init'
    _on_signals(stop)
    _observed(settings, stop, portal=system.portal, ca=system.ca)

    def deliver() -> None:
        system.pump()

    def pump(stop: threading.Event) -> None:
        run_periodically("in-process delivery", deliver, stop, log, interval=0.2,
                         first_wait=0.2)

    from adapters.entrypoints.ca_wiring import publishing_loop

    components = EMBEDDED[role]
    threads = [threading.Thread(target=pump, args=(stop,), name="pump", daemon=True),
               threading.Thread(target=_expiry_loop(system.ca, settings.expiry_interval_seconds),
                                args=(stop,), name="ca-expiry", daemon=True),
               threading.Thread(target=publishing_loop, args=(system.ca, settings, stop),
                                name="ca-publish", daemon=True),
               *_portal_threads(components, system.portal, settings, stop, system.ca),
               *_threads([*_notifier(components, system.portal, settings),
                          *_checkpoints(system.ca, settings, passphrase, True),
                          *_checkpoints(system.portal, settings, passphrase, True)], stop)]
    for thread in threads:
        thread.start()
    log.info("serving %s (embedded: %s, in-process transport)", role,
             ", ".join((*components, "ca-expiry", "ca-publish")))
    stop.wait()
    for thread in threads:
        thread.join(timeout=10)
    system.close()


def _serve_relying(role: str, settings: Settings, stop: threading.Event) -> None:
    """``ocsp`` or ``crl``: no CA key, no passphrase (adapters/relying/crl_http.py)."""
    from adapters.entrypoints.relying_wiring import serve_relying

    apply_migrations(settings.store_url("ca"))
    _on_signals(stop)
    serve_relying(role, settings, stop)


#: The Kafka roles' cyclic garbage collector runs after this many allocations (Python's default
#: is 700): every batch makes hundreds of thousands of short-lived objects, and each collection
#: of the oldest generation walks every object the process keeps (caches, the expiry index).
#: Measured: about 4 % more certificates/s end to end (docs/benchmarks.md).
GC_THRESHOLD = (50_000, 20, 20)


def fewer_collections() -> None:
    """What the long-running roles do with the garbage collector once started."""
    gc.collect()
    gc.freeze()  # what start-up built stays: never walked again
    gc.set_threshold(*GC_THRESHOLD)


def serve(role: str, settings: Settings, passphrase: str | None,
          stop: threading.Event | None = None) -> None:
    """Run a role until stopped."""
    if role in HTTP_ROLES:
        _serve_relying(role, settings, stop or threading.Event())
        return
    if not settings.kafka_bootstrap:
        _serve_embedded(role, settings, passphrase, stop or threading.Event())
        return
    components = ROLES[role]
    stop = stop or threading.Event()
    clock = make_clock(settings)
    portal: Portal | None = None
    ca: CertificateAuthority | None = None
    opening = open_retrying()  # several roles starting at once race on CREATE TABLE
    if any(c.startswith("portal") or c == "notifier" for c in components):
        apply_migrations(settings.store_url("portal"))  # the mail outbox table
        portal = opening(build_portal, settings, clock)
    if any(c.startswith("ca") for c in components):
        ca = opening(build_ca, settings, clock, passphrase)
        ca.authority()  # refuse to start before 'partner-ca init'
    for role_name, app in (("portal", portal), ("ca", ca)):
        if app is not None:  # its credential files are checked here, before anything runs
            credentials(settings, role_name)
    quiet_missing_topics()  # ca-events does not exist until a CA role first starts
    new_inbox: dict[str, Callable[[], KafkaInbox]] = {}
    new_relay: dict[str, Callable[[], KafkaRelay]] = {}
    if portal is not None:
        new_inbox["portal-inbox"] = lambda: portal_inbox(portal, settings)
        if "portal-relay" in components:
            new_relay["portal-relay"] = lambda: _with_topics(
                settings, "portal", lambda: portal_relay(portal, settings))
    if ca is not None:
        new_inbox["ca-inbox"] = lambda: ca_inbox(ca, settings)
        if "ca-relay" in components:
            new_relay["ca-relay"] = lambda: _with_topics(
                settings, "ca", lambda: ca_relay(ca, settings))
    # filled as each connects: nothing here waits for the broker (issue 26, item 13)
    relays: dict[str, KafkaRelay] = {}
    inboxes: dict[str, KafkaInbox] = {}

    _on_signals(stop)
    fewer_collections()
    from adapters.observability import observe

    for app in (portal, ca):  # counted from the first transaction on
        if app is not None:
            observe(app)
    # one of each singleton runs at a time, in whichever worker holds its lease
    # (adapters/storage/lease.py); another worker takes it over when that one dies
    singletons: list[tuple[str, str, Runner]] = []
    for name in components:
        if name in new_relay:
            singletons.append((name, name.split("-")[0],
                               _relay_runner(name, new_relay[name], relays)))
        elif name == "ca-expiry" and ca is not None:
            singletons.append((name, "ca", _expiry_loop(ca, settings.expiry_interval_seconds)))
        elif name == "ca-publish" and ca is not None:
            from adapters.entrypoints.ca_wiring import publishing_loop  # OCSP responses and CRLs

            singletons.append((name, "ca", lambda s: publishing_loop(ca, settings, s)))
    if portal is not None:
        singletons.extend((n, "portal", r) for n, r in _notifier(components, portal, settings))
    if portal is not None and "portal-relay" in components:
        singletons.extend((n, "portal", r) for n, r in _checkpoints(
            portal, settings, passphrase, holds_ca_keys=ca is not None))
    if ca is not None and "ca-relay" in components:
        singletons.extend((n, "ca", r) for n, r in _checkpoints(ca, settings, passphrase, True))
    threads = [_leased(name, app_name, run, settings, stop)
               for name, app_name, run in singletons]
    if portal is not None:
        threads.extend(_portal_threads(components, portal, settings, stop))
    for thread in threads:
        thread.start()
    wanted = [name for name in components if name in new_inbox]
    for name in wanted:
        _connect_inbox(name, new_inbox[name], inboxes, stop)
    _observed(settings, stop, portal=portal, ca=ca, relays=relays, inboxes=inboxes,
              count=False, expected=[*new_relay, *wanted])
    log.info("serving %s (%s) on %s", role, ", ".join(components), settings.kafka_bootstrap)
    while not stop.wait(5.0):
        for name, inbox in list(inboxes.items()):
            if inbox.reader.wedged():
                # kafka-python 3.0.12 occasionally wedges a consumer's IO loop (poll() never
                # returns), and a broker away for long leaves one stalled. Positions live in
                # our store, so a new consumer resumes exactly; the old one is abandoned and
                # ignores anything it might still fetch. The new one is built in the
                # background: while the broker is away that takes as long as the outage.
                log.error("%s: poll() has not returned for %.0f s (kafka-python IO loop "
                          "wedged, or the broker away); starting a new consumer", name,
                          time.monotonic() - inbox.last_progress)
                inbox.abandon()
                del inboxes[name]
                _connect_inbox(name, new_inbox[name], inboxes, stop)
    for thread in threads:
        thread.join(timeout=10)
    for inbox in inboxes.values():
        inbox.close()
    for relay in relays.values():
        relay.producer.close()
    for app in (portal, ca):
        if app is not None:
            app.close()
