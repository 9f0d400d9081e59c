"""The relying roles (``serve --role ocsp|crl``) wired from the settings (the wiring room:
adapters/relying/ takes values). What they keep of the settings (never a CA secret), the CA's
store opened read-only, the OCSP worker processes — each with its own listening socket on the
same port (SO_REUSEPORT, TCP_NODELAY): the kernel spreads connections; ``uvicorn --workers``
shares one pre-bound socket, which runs at about 1,100 requests/s here (uvicorn issue #3149)
— and the CRL server with its status view. This module never imports the CA role (an import
contract): a relying process loads no CA code and holds no CA key or passphrase.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
from datetime import timedelta

import uvicorn

from adapters.compat.uvicorn import bounded_config
from adapters.observability import (
    Gauges,
    crl_age,
    lag_check,
    oldest_ocsp_response,
    serve_ops,
    store_check,
    view_lag,
)
from adapters.periodic import run_periodically
from adapters.relying.crl_http import crl_app
from adapters.relying.delegated_key import DelegatedKeyFiles
from adapters.relying.ocsp_http import OcspAsgi, OcspResponder, ocsp_responder
from adapters.settings import Settings
from adapters.sockets import inherited, listening_socket, shown
from adapters.storage.crl_files import served_crl
from adapters.storage.persistence import ocsp_store, open_ca_store, opening, status_view
from adapters.storage.wakeups import OCSP_CHANNEL, Wakeups
from ca_core.ca import CertificateAuthority
from ca_core.errors import DomainError
from projections.feed import catch_up
from projections.status import RevocationStatusProjection

log = logging.getLogger("partner_ca.ocsp")


def responder_settings(settings: Settings) -> Settings:
    """What the OCSP and CRL roles keep of the settings: never the CA key passphrase."""
    return settings.model_copy(update={"key_passphrase": None, "hsm_pin": None,
                                       "hsm_pin_file": None, "hsm_root_pin": None,
                                       "hsm_root_pin_file": None, "key_store": "file",
                                       "key_stores": {}})


def open_ca(settings: Settings) -> CertificateAuthority:
    """The CA's store for a relying-party role: read, no CA key; the delegated OCSP key
    files when PARTNER_CA_OCSP_KEY_PASSPHRASE is set."""
    # roles starting at once race on CREATE TABLE: opened with retries
    ca = opening()(open_ca_store, settings.store_url("ca"), settings.data_dir,
                   settings.issuance_policy())
    if settings.ocsp_key_passphrase is not None:
        ca.ocsp_keys = DelegatedKeyFiles(settings.ocsp_key_dir,
                                         settings.ocsp_key_passphrase.get_secret_value().encode())
    return ca


def responder_of(ca: CertificateAuthority, settings: Settings) -> OcspResponder:
    """The OCSP responder over the CA's response store, as the settings describe it."""
    return ocsp_responder(ca, ocsp_store(settings.store_url("ca"), settings.data_dir),
                          timedelta(hours=settings.ocsp_validity_hours))


def _worker(settings: Settings, shared: socket.socket | None = None) -> None:
    """One HTTP worker process: its own socket on the shared port (or the one inherited
    socket, ``fd:N``, shared by all workers), its own cache; no CA key, no CA passphrase."""
    logging.basicConfig(level=logging.WARNING, format="ocsp worker %(process)d: %(message)s")
    ca = open_ca(settings)
    wakeups = Wakeups(settings.store_url("ca"), OCSP_CHANNEL)
    app = OcspAsgi(responder_of(ca, settings), poll_seconds=settings.relying_poll_seconds,
                   wakeups=wakeups, max_bytes=settings.ocsp_cache_bytes)
    config = bounded_config(app, loop="uvloop", lifespan="on", **settings.http_limits())
    uvicorn.Server(config).run(sockets=[shared or listening_socket(settings.ocsp_listen,
                                                                   reuse_port=True)])
    wakeups.close()
    ca.close()


def serve_ocsp(settings: Settings, stop: threading.Event) -> None:
    """``ocsp_workers`` HTTP worker processes, restarted when one dies; until ``stop``. The
    responses are pre-signed by the CA role (adapters/ca/publishing.py); this role holds no CA
    key and no CA passphrase, at most the delegated OCSP key for requests with a nonce."""
    settings = responder_settings(settings)
    ca = open_ca(settings)
    try:
        ca.ocsp.current()
    except DomainError as exc:
        log.warning("requests with a nonce get the pre-signed answer without it: %s", exc)
    metrics_dir = None
    if settings.metrics_listen:
        # the workers count in prometheus-client's multiprocess mode; this process sums them
        metrics_dir = tempfile.mkdtemp(prefix="partner-ca-ocsp-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        gauges = Gauges()
        gauges.add("partner_ca_ocsp_oldest_response_age_seconds",
                   "Seconds since the oldest pre-signed OCSP response was signed",
                   oldest_ocsp_response(lambda: ocsp_store(settings.store_url("ca"),
                                                           settings.data_dir)))
        serve_ops(settings.metrics_listen, settings.http_limits(), [store_check(ca)], stop,
                  gauges, multiprocess_dir=metrics_dir)
    context = multiprocessing.get_context("spawn")  # no inherited database connections
    shared = listening_socket(settings.ocsp_listen) if inherited(settings.ocsp_listen) else None

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(settings, shared), daemon=True)
        process.start()
        return process

    workers = [start() for _ in range(settings.ocsp_workers)]
    log.info("serving ocsp on http://%s with %d worker(s)",
             shown(shared) if shared else settings.ocsp_listen, len(workers))
    while not stop.wait(settings.relying_poll_seconds):
        for i, process in enumerate(workers):
            if not process.is_alive():
                log.error("OCSP worker %s exited (%s); starting another", process.pid,
                          process.exitcode)
                workers[i] = start()
    for process in workers:
        if process.pid is not None and process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    for process in workers:
        process.join(timeout=10)
        if process.is_alive():  # read-only: nothing of it needs saving; the role must end
            log.warning("OCSP worker %s did not stop in 10 s; killing it", process.pid)
            process.kill()
            process.join(timeout=5)
    ca.close()
    if metrics_dir is not None:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def serve_relying(role: str, settings: Settings, stop: threading.Event) -> None:
    """Run ``ocsp`` or ``crl`` until ``stop`` is set. Neither holds
    a CA key or the CA passphrase: the CA role signs what they serve (adapters/ca/publishing.py).
    """
    settings = responder_settings(settings)
    if role == "ocsp":
        serve_ocsp(settings, stop)
        return
    ca = open_ca(settings)
    ca.authority()  # refuse to start before 'partner-ca init'
    status = RevocationStatusProjection(status_view(settings.store_url("ca"), settings.data_dir))
    sock = listening_socket(settings.crl_listen)
    server = uvicorn.Server(bounded_config(
        crl_app(ca, served_crl(settings.data_dir), status.view), **settings.http_limits()))
    web = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="crl-http",
                           daemon=True)
    web.start()
    logging.getLogger("partner_ca.crl").info("serving crl on http://%s", shown(sock))
    # the status view behind /status/<serial> follows the CA's log (a read model, no key)
    def follow() -> None:
        catch_up(status, ca)

    maintainer = threading.Thread(target=run_periodically, args=(
        "the CRL server's status view", follow, stop, log),
        kwargs={"interval": settings.relying_poll_seconds}, name="crl-status-view", daemon=True)
    maintainer.start()
    gauges = Gauges()
    gauges.add("partner_ca_crl_age_seconds", "Seconds since the served CRL's thisUpdate",
               crl_age(served_crl(settings.data_dir)))
    lag = view_lag(status.view, ca)
    gauges.add("partner_ca_status_view_lag", "CA log positions the status view has not read",
               lag)
    checks = [store_check(ca), lag_check("status-view", lag, settings.ready_lag_bound)]
    serve_ops(settings.metrics_listen, settings.http_limits(), checks, stop, gauges)
    stop.wait()
    server.should_exit = True
    web.join(timeout=10)
    maintainer.join(timeout=10)
    sock.close()
    ca.close()
