"""`partner-ca audit replay`: rebuild every projection from position 0 into a scratch store and
compare it row by row with the live one.

The rebuild stops at the position the live view has reached (its tracking
record), so a live view that is merely behind is not reported. Compared: the
revocation-status view (every column), the OCSP response store (serial, status,
reason, revocation time, deciding position — signatures and signing times differ
by nature; the rebuild signs with a throw-away key), the email outbox (id, kind,
recipient, language, parameters — delivery state is not history).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from adapters.persistence import mail_outbox, ocsp_store, status_view
from adapters.settings import Settings
from ca_core.eventmodel import read_log
from ca_core.ocsp import Signer
from ca_core.x509profile import from_pem
from projections.notifications import NotificationProjection, Recipient
from projections.ocsp import OcspResponseProjection
from projections.status import RevocationStatusProjection


@dataclass(frozen=True)
class Difference:
    view: str
    key: str
    live: Any
    rebuilt: Any

    def __str__(self) -> str:
        return f"{self.view} {self.key}: live {self.live!r}, rebuilt {self.rebuilt!r}"


@dataclass(frozen=True)
class ReplayReport:
    events: int
    seconds: float
    compared: dict[str, int]
    differences: list[Difference]


def _feed(projection: Projection[Any], source: Any, upto: int,
          tick: Callable[[int], None] | None) -> int:
    count = 0
    for position, event in read_log(source, topics=projection.topics):
        if position > upto:
            break
        projection.process_event(event, Tracking(source.name, position))
        count += 1
        if tick is not None and count % 1000 == 0:
            tick(1000)
    if tick is not None:
        tick(count % 1000)
    return count


def _throwaway_signer(issuer_pem: str) -> Signer:
    """Signs the rebuilt OCSP responses: only their contents are compared."""
    issuer = from_pem(issuer_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(issuer.subject).issuer_name(issuer.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return Signer(key, cert, issuer)


def _compare(view: str, live: dict[str, Any], rebuilt: dict[str, Any],
             differences: list[Difference]) -> int:
    for key in sorted(set(live) | set(rebuilt)):
        if live.get(key) != rebuilt.get(key):
            differences.append(Difference(view, key, live.get(key), rebuilt.get(key)))
    return len(set(live) | set(rebuilt))


def replay(ca: Any, portal: Any, settings: Settings, scratch: Path | None = None,
           tick: Callable[[int], None] | None = None) -> ReplayReport:
    started = time.perf_counter()
    scratch = scratch or Path(tempfile.mkdtemp(prefix="partner-ca-replay-"))
    differences: list[Difference] = []
    compared: dict[str, int] = {}
    events = 0

    live_status = status_view(settings.store_url("ca"), settings.data_dir)
    rebuilt_status = RevocationStatusProjection(status_view("", scratch))
    events += _feed(rebuilt_status, ca, live_status.max_tracking_id(ca.name) or 0, tick)
    compared["revocation_status"] = _compare(
        "revocation_status", {r.serial: r for r in live_status.rows()},
        {r.serial: r for r in rebuilt_status.view.rows()}, differences)

    live_ocsp = ocsp_store(settings.store_url("ca"), settings.data_dir)
    rebuilt_ocsp = OcspResponseProjection(ocsp_store("", scratch))
    signer = _throwaway_signer(ca.authority().issuing_certificate_pem)
    rebuilt_ocsp.signer = lambda: signer
    upto = live_ocsp.max_tracking_id(ca.name) or 0
    events += _feed(rebuilt_ocsp, ca, upto, tick)

    def answer(row: Any) -> tuple[Any, ...]:
        return (row.status, row.reason, row.revoked_at, row.cause_position)

    compared["ocsp_responses"] = _compare(
        "ocsp_responses", {r.serial: answer(r) for r in live_ocsp.rows()},
        {r.serial: answer(r) for r in rebuilt_ocsp.view.rows()}, differences)

    live_mail = mail_outbox(settings.store_url("portal"), settings.data_dir)
    rebuilt_mail = NotificationProjection(mail_outbox("", scratch))
    rebuilt_mail.owner = lambda request_id: portal.request(request_id).user_id

    def recipient(user_id: str) -> Recipient:
        partner = portal.partner(user_id)
        return Recipient(user_id, partner.email, partner.language)

    rebuilt_mail.recipient = recipient
    rebuilt_mail.clock_now = portal.clock.now
    events += _feed(rebuilt_mail, portal, live_mail.max_tracking_id(portal.name) or 0, tick)

    def content(mail: Any) -> tuple[Any, ...]:
        return (mail.kind, mail.recipient, mail.language, mail.params)

    compared["mail_outbox"] = _compare(
        "mail_outbox", {m.id: content(m) for m in live_mail.all() if "." in m.id
                        and not m.id.startswith("reminder.")},
        {m.id: content(m) for m in rebuilt_mail.view.all()}, differences)
    return ReplayReport(events, time.perf_counter() - started, compared, differences)
