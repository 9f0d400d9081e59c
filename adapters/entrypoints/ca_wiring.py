"""The CA role's publishing wired from the settings (the wiring room: adapters/ca/
publishing.py and ocsp_signing.py take values): the OCSP publisher, the CRL publisher, both
together, a publication at once, and ``serve``'s publishing loop."""

from __future__ import annotations

import threading
from datetime import timedelta

from adapters.ca.ocsp_signing import OcspPublisher, ocsp_publisher
from adapters.ca.publishing import CaPublishing, CrlPublisher, run_publishing
from adapters.settings import Settings
from adapters.storage.crl_files import served_crl
from adapters.storage.persistence import status_view
from adapters.storage.wakeups import Wakeups
from ca_core.ca import CertificateAuthority
from projections.status import RevocationStatusProjection


def ocsp_publisher_of(ca: CertificateAuthority, settings: Settings) -> OcspPublisher:
    """The CA's OCSP publisher as the settings describe it."""
    return ocsp_publisher(ca, settings.store_url("ca"), settings.data_dir,
                          settings.ocsp_validity_hours, settings.ocsp_signer_days,
                          settings.ocsp_signer_renew_days)


def crl_publisher(ca: CertificateAuthority, settings: Settings) -> CrlPublisher:
    status = RevocationStatusProjection(status_view(settings.store_url("ca"), settings.data_dir))
    return CrlPublisher(ca, status, served_crl(settings.data_dir),
                        timedelta(seconds=settings.crl_delay_seconds),
                        timedelta(hours=settings.crl_validity_hours))


def ca_publishing(ca: CertificateAuthority, settings: Settings) -> CaPublishing:
    return CaPublishing(ca, ocsp_publisher_of(ca, settings), crl_publisher(ca, settings),
                        timedelta(days=settings.root_ocsp_days))


def publish_now(ca: CertificateAuthority, settings: Settings) -> None:
    """What relying parties need, signed at once by a command that holds the CA keys (``init``,
    ``ca rollover``, a CLI that signed in-process): every active issuing CA's CRL, its
    delegated OCSP signer, the root's answers about the issuing CAs and an answer for every
    certificate — so a CDP or an OCSP responder pointed here never answers 404 or
    ``unauthorized`` while no ``serve --role ca`` has run yet (issue 26, item 14)."""
    ca_publishing(ca, settings).step()


def publishing_loop(ca: CertificateAuthority, settings: Settings,
                    stop: threading.Event) -> None:
    """``serve``'s publishing thread, woken by the CA's log growing (PostgreSQL NOTIFY)."""
    channel = getattr(ca.recorder, "channel_name", "")  # eventsourcing's PostgreSQL recorder
    wakeups = Wakeups(settings.store_url("ca") if channel else "", channel, stop)
    run_publishing(ca_publishing(ca, settings), wakeups, settings.relying_poll_seconds, stop)
