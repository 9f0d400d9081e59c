"""``serve --role ocsp``: the worker processes that serve the OCSP app (ocsp_http.py).

The parent starts ``ocsp_workers`` processes, each with its own listening socket on the same
port (SO_REUSEPORT, TCP_NODELAY): the kernel spreads connections. (``uvicorn --workers``
shares one pre-bound socket, which runs at about 1,100 requests/s here — uvicorn issue
#3149.) A worker that dies is replaced; the parent sums the workers' metrics.
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

import uvicorn

from adapters.compat.uvicorn import bounded_config
from adapters.observability import Gauges, oldest_ocsp_response, serve_ops, store_check
from adapters.relying.ca_store import open_ca, responder_settings
from adapters.relying.ocsp_http import OcspAsgi, ocsp_responder
from adapters.settings import Settings
from adapters.sockets import inherited, listening_socket, shown
from adapters.storage.persistence import ocsp_store
from adapters.storage.wakeups import OCSP_CHANNEL, Wakeups
from ca_core.errors import DomainError

log = logging.getLogger("partner_ca.ocsp")


def _worker(settings: Settings, shared: socket.socket | None = None) -> None:
    """One HTTP worker process: its own socket on the shared port (or the one inherited
    socket, ``fd:N``, shared by all workers), its own cache; no CA key, no CA passphrase."""
    logging.basicConfig(level=logging.WARNING, format="ocsp worker %(process)d: %(message)s")
    ca = open_ca(settings)
    wakeups = Wakeups(settings.store_url("ca"), OCSP_CHANNEL)
    app = OcspAsgi(ocsp_responder(ca, settings), poll_seconds=settings.relying_poll_seconds,
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
        serve_ops(settings, [store_check(ca)], stop, gauges, multiprocess_dir=metrics_dir)
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
