"""Metrics, health and structured logs for every ``serve`` role (issue 19).

- **Metrics** (prometheus-client): counters of what this process recorded, taken from the
  events of each transaction once it is in the store (``MessageDrivenApplication.observers``)
  — so they move by exactly what happened, and summed over processes they count each fact
  once; gauges read at scrape time (the served CRL's age, the oldest pre-signed OCSP
  response, the revocation-status view's lag behind the CA's log). The OCSP workers are
  processes of their own: they count in prometheus-client's multiprocess mode, and the OCSP
  role's parent exposes the sum.
- **Health**: ``/healthz`` (the process answers) and ``/readyz`` (each of the role's checks:
  its stores reachable, its keys at hand, its views caught up within a bound).
- Both on ``PARTNER_CA_METRICS_LISTEN`` (``host:port`` or ``fd:N``), apart from the public
  listeners — nginx does not put them on the internet.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("partner_ca.observability")
#: how long /readyz waits for one check
CHECK_SECONDS = 3.0
_CHECKS = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="readyz")

ISSUED = Counter("partner_ca_certificates_issued", "Certificates signed (CA role)")
REJECTED = Counter("partner_ca_requests_rejected", "Requests the CA refused, by code", ["code"])
REVOKED = Counter("partner_ca_certificates_revoked", "Revocations recorded, by RFC 5280 reason",
                  ["reason"])
EXPIRED = Counter("partner_ca_certificates_expired", "Expiries recorded")
LOCKOUTS = Counter("partner_ca_lockouts", "OTP and revocation-password lock-outs", ["kind"])
REFUSED_MESSAGES = Counter("partner_ca_messages_rejected",
                           "Messages recorded as MessageRejected, by the application", ["app"])
ISSUANCE = Histogram("partner_ca_issuance_seconds",
                     "From the request accepted by the portal to the certificate at the portal",
                     buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
MAILS = Counter("partner_ca_mails", "Mails handed to the SMTP server or failed", ["outcome"])
CRLS = Counter("partner_ca_crls_published", "CRL publications (every active issuing CA)")
OCSP_REQUESTS = Counter("partner_ca_ocsp_requests", "OCSP requests by answer and cache",
                        ["answer", "cache"])
OCSP_SIGNATURES = Counter("partner_ca_ocsp_signatures",
                          "OCSP responses signed at request time (nonce)")


#: one INFO line per recorded domain event (PARTNER_CA_LOG_LEVEL=WARNING silences them)
events_log = logging.getLogger("partner_ca.events")

#: the attributes of an event that say what it is about, logged as fields of their own
#: (``module`` as ``business_module``: LogRecord has a ``module`` of its own)
SUBJECT_FIELDS = {"request_id": "request_id", "serial": "serial", "user_id": "user_id",
                  "module": "business_module", "reason": "reason", "code": "code"}


def log_recorded(app: Any) -> None:
    """Log each event ``app`` records: type, log position, aggregate and its subject (request
    id, serial, …). Events never hold secrets (DESIGN R10), so neither do these lines."""

    def write(recordings: Sequence[Any]) -> None:
        if not events_log.isEnabledFor(logging.INFO):
            return
        for recording in recordings:
            event = recording.domain_event
            name = type(event).__name__
            fields = {"event": name, "app": app.name,
                      "log_position": recording.notification.id,
                      "aggregate_id": str(event.originator_id)}
            for attribute, field in SUBJECT_FIELDS.items():
                value = getattr(event, attribute, None)
                if value is not None:
                    fields[field] = str(value)
            if "request_id" not in fields and _is_request(event):
                fields["request_id"] = fields["aggregate_id"]  # a request's own events
            subject = fields.get("serial") or fields.get("request_id") or fields["aggregate_id"]
            events_log.info("%s %s at %s:%d", name, subject, app.name,
                            recording.notification.id, extra=fields)

    app.recording_observers.append(write)


def _is_request(event: Any) -> bool:
    return type(event).__qualname__.startswith("CertificateRequest.")


def observe(app: Any) -> None:
    """Count what ``app`` records, from each transaction's events once stored."""
    submitted: dict[Any, datetime] = {}

    def count(events: Sequence[Any]) -> None:
        for event in events:
            name = type(event).__name__
            if name == "CertificateIssued" and app.name == "ca":
                ISSUED.inc()
            elif name == "SigningRequestRejected":
                REJECTED.labels(event.code).inc()
            elif name == "CertificateRevoked":
                REVOKED.labels(event.reason).inc()
            elif name == "CertificateExpired":
                EXPIRED.inc()
            elif name == "OtpLocked":
                LOCKOUTS.labels("otp").inc()
            elif name == "RevocationLocked":
                LOCKOUTS.labels("revocation-password").inc()
            elif name == "MessageRejected":
                REFUSED_MESSAGES.labels(app.name).inc()
            elif name == "CsrSubmitted":
                if len(submitted) > 100_000:  # never answered: do not grow without bound
                    submitted.clear()
                submitted[event.originator_id] = event.timestamp
            elif name == "CertificateReady":
                began = submitted.pop(event.originator_id, None)
                if began is not None:
                    ISSUANCE.observe(max(0.0, (event.timestamp - began).total_seconds()))

    app.observers.append(count)
    log_recorded(app)


class Gauges:
    """What is read at scrape time: ages and lags, each a callable returning a number (or
    None when there is nothing to say yet)."""

    def __init__(self) -> None:
        self.gauges: dict[str, tuple[str, Callable[[], float | None]]] = {}

    def add(self, name: str, documentation: str, read: Callable[[], float | None]) -> None:
        self.gauges[name] = (documentation, read)

    def collect(self) -> Any:
        for name, (documentation, read) in self.gauges.items():
            try:
                value = read()
            except Exception:  # a store that is down: the gauge is absent, /readyz says why
                log.debug("gauge %s could not be read", name, exc_info=True)
                continue
            if value is not None:
                yield GaugeMetricFamily(name, documentation, value=value)


def crl_age(path: Path) -> Callable[[], float | None]:
    """Seconds since the served CRL's thisUpdate."""
    from adapters.storage.crl_files import CrlFiles  # only the roles that serve a CRL

    files = CrlFiles()

    def read() -> float | None:
        served = files.read(path)
        return None if served is None else (datetime.now(UTC) - served.this_update
                                            ).total_seconds()
    return read


class _Opened:
    """A store given as itself, or as a callable opening it at first use."""

    def __init__(self, store: Any) -> None:
        self._store, self._open = (None, store) if callable(store) else (store, None)

    def __call__(self) -> Any:
        if self._store is None and self._open is not None:
            self._store = self._open()
        return self._store


def oldest_ocsp_response(store: Any) -> Callable[[], float | None]:
    """Seconds since the oldest pre-signed OCSP response was signed (``store``: the OCSP
    store, or a callable opening it)."""
    opened = _Opened(store)

    def read() -> float | None:
        oldest = opened().oldest_signing()
        if oldest is None:
            return None
        return (datetime.now(UTC) - oldest).total_seconds()
    return read


def view_lag(view: Any, app: Any) -> Callable[[], float | None]:
    """Positions of ``app``'s log a view (or a callable opening it) has not yet processed."""
    opened = _Opened(view)

    def read() -> float | None:
        return float((app.recorder.max_notification_id() or 0)
                     - (opened().max_tracking_id(app.name) or 0))
    return read


#: a readiness check: (name, callable that raises when not ready)
Check = tuple[str, Callable[[], Any]]


def store_check(app: Any) -> Check:
    return (f"{app.name}-store", app.recorder.max_notification_id)


def lag_check(name: str, lag: Callable[[], float | None], bound: float) -> Check:
    def check() -> None:
        behind = lag()
        if behind is not None and behind > bound:
            raise RuntimeError(f"{behind:.0f} positions behind (bound {bound:.0f})")
    return (name, check)


class _Everything:
    """The process's default registry, as one collector of another registry."""

    def collect(self) -> Any:
        yield from REGISTRY.collect()


def ops_app(checks: Sequence[Check], gauges: Gauges | None = None,
            multiprocess_dir: str | None = None) -> Any:
    """The ops listener: /metrics, /healthz, /readyz (Starlette)."""
    # here: a process without PARTNER_CA_METRICS_LISTEN never loads the web stack for it
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    registry = CollectorRegistry()  # this listener's: the process's own metrics, and more
    registry.register(_Everything())  # type: ignore[arg-type]
    if multiprocess_dir is not None:
        MultiProcessCollector(registry, path=multiprocess_dir)
    if gauges is not None:
        registry.register(gauges)  # type: ignore[arg-type]

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    def ready() -> tuple[bool, dict[str, str]]:
        """Every check, each within CHECK_SECONDS (a store that is down may hang a
        connection attempt far longer: that is an answer too)."""
        results: dict[str, str] = {}
        running = {name: _CHECKS.submit(check) for name, check in checks}
        for name, future in running.items():
            try:
                future.result(timeout=CHECK_SECONDS)
                results[name] = "ok"
            except concurrent.futures.TimeoutError:
                results[name] = f"no answer within {CHECK_SECONDS:.0f} s"
            except Exception as exc:  # noqa: BLE001 - any failure makes the role unready
                results[name] = f"{type(exc).__name__}: {exc}"[:300]
        return all(v == "ok" for v in results.values()), results

    async def readyz(request: Request) -> Response:
        import asyncio

        ok, results = await asyncio.to_thread(ready)
        return JSONResponse({"status": "ready" if ok else "unready", "checks": results},
                            status_code=200 if ok else 503)

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz),
                             Route("/readyz", readyz)])


def serve_ops(listen: str, limits: dict[str, Any], checks: Sequence[Check],
              stop: threading.Event, gauges: Gauges | None = None,
              multiprocess_dir: str | None = None) -> threading.Thread | None:
    """Start the ops listener on ``listen`` (``PARTNER_CA_METRICS_LISTEN``; empty: none) with
    the HTTP ``limits`` of every listener; None when there is none."""
    if not listen:
        return None
    import uvicorn  # here: only a process that serves its metrics loads the HTTP server

    from adapters.compat.uvicorn import bounded_config
    from adapters.sockets import listening_socket, serve_until

    sock = listening_socket(listen)
    server = uvicorn.Server(bounded_config(ops_app(checks, gauges, multiprocess_dir),
                                           lifespan="off", **limits))

    thread = threading.Thread(target=serve_until, name="ops-listener", daemon=True,
                              args=(server, sock, stop, "ops-http", "metrics and health"))
    thread.start()
    return thread
