"""`partner-ca audit replay`: rebuild every projection from position 0 into a scratch store and
compare it row by row with the live one.

Each log is read once (plain cursors, pages of 10,000: ``adapters.logreader``);
every stored record is counted, and those a projection follows are decoded and
fed to the projection's own ``process_event`` — the same code the live views
run — with an in-memory view behind it. The rebuilt rows are then written to the
scratch SQLite store in one transaction per view (kept for inspection with
``--scratch``) and compared with the live rows.

The rebuild stops at the position the live view has reached (its tracking
record), so a live view that is merely behind is not reported. Compared: the
revocation-status view (every column), the OCSP response store (serial, status,
reason, revocation time, deciding position — the rebuild records the answers
and does not sign them: signatures and signing times differ by nature), the
email outbox (id, kind, recipient, language, parameters — delivery state is not
history).
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from adapters.logreader import Decoder, records
from adapters.persistence import mail_outbox, ocsp_store, status_view
from adapters.settings import Settings
from ca_core.clock import SystemClock
from ca_core.ocsp import Answer
from ca_core.request import CertificateRequest
from projections.notifications import Mail, MailOutbox, NotificationProjection, Recipient
from projections.ocsp import OcspResponseProjection, OcspStore, StoredResponse
from projections.status import (
    RevocationStatusProjection,
    SQLiteStatusView,
    StatusRow,
    StatusView,
)

TICK = 10_000


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
    events: int  # log positions covered (both logs, up to the live views' positions)
    decoded: int  # events a projection follows: read, decoded and processed (per view)
    seconds: float
    compared: dict[str, int]
    differences: list[Difference]


# -- in-memory views behind the projections' own code ------------------------------------
class _Tracked:
    def __init__(self) -> None:
        self.positions: dict[str, int] = {}

    def insert_tracking(self, tracking: Tracking) -> None:
        self.positions[tracking.application_name] = tracking.notification_id

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.positions.get(application_name)


class _MemoryStatus(_Tracked, StatusView):
    def __init__(self) -> None:
        super().__init__()
        self.by_serial: dict[str, StatusRow] = {}

    def save_rows(self, rows: list[StatusRow], tracking: Tracking | None) -> None:
        for row in rows:
            self.by_serial[row.serial] = row
        if tracking is not None:
            self.insert_tracking(tracking)

    def get(self, serial: str) -> StatusRow | None:
        return self.by_serial.get(serial)

    def _select(self, where: str, args: tuple[Any, ...]) -> list[StatusRow]:
        raise NotImplementedError("in-memory replay view")

    def revoked_entries(self) -> list[Any]:
        raise NotImplementedError("in-memory replay view")

    def stored(self, row: StatusRow) -> tuple[Any, ...]:
        raise NotImplementedError("in-memory replay view")

    def stored_rows(self) -> dict[str, tuple[Any, ...]]:
        raise NotImplementedError("in-memory replay view")


class _MemoryOcsp(_Tracked, OcspStore):
    def __init__(self) -> None:
        super().__init__()
        self.by_serial: dict[str, StoredResponse] = {}

    def save(self, rows: list[StoredResponse], tracking: Tracking | None) -> None:
        for row in rows:
            self.by_serial[row.serial] = row
        if tracking is not None:
            self.insert_tracking(tracking)

    def _select(self, where: str, args: tuple[Any, ...]) -> list[StoredResponse]:
        raise NotImplementedError("in-memory replay view")

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError("in-memory replay view")


class _MemoryMail(_Tracked, MailOutbox):
    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, Mail] = {}

    def add(self, mails: list[Mail], tracking: Tracking | None) -> int:
        new = [m for m in mails if m.id not in self.by_id]
        self.by_id.update((m.id, m) for m in new)
        if tracking is not None:
            self.insert_tracking(tracking)
        return len(new)

    def all(self) -> list[Mail]:
        return [self.by_id[k] for k in sorted(self.by_id)]

    def _execute(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError("in-memory replay view")


class _Answers(OcspResponseProjection):
    """The OCSP projection recording what it would sign, without signing."""

    def _save(self, answer: Answer, tracking: Tracking) -> None:
        now = self.clock.now()
        self.view.save([StoredResponse(
            serial=answer.serial, status=answer.status, reason=answer.reason,
            revoked_at=answer.revoked_at, sha1_der=b"", sha256_der=b"", this_update=now,
            next_update=now + self.validity, signer_serial="replay",
            cause_position=tracking.notification_id)], tracking)


# -- one view rebuilt from its log ---------------------------------------------------------
def _handler(projection: Projection[Any], event_type: type) -> Callable[[Any, Tracking], None]:
    """The projection's ``process_event`` for one event type, dispatched once: a
    ``singledispatchmethod`` re-dispatches (and wraps) on every call in Python 3.11."""
    descriptor = inspect.getattr_static(type(projection), "process_event")
    dispatcher = getattr(descriptor, "dispatcher", None)
    if dispatcher is None:
        return projection.process_event
    return functools.partial(dispatcher.dispatch(event_type), projection)


def _feed(projection: Projection[Any], source: Any, upto: int, progress: Any,
          extra: tuple[str, Callable[[Any], None]] | None = None) -> int:
    """Feed ``projection`` the events of ``source`` up to ``upto`` (its topics filtered in
    SQL, as eventsourcing's projection runner does); returns how many were decoded.
    ``progress.value``: the log position reached."""
    decode = Decoder(source)
    handlers: dict[type, Callable[[Any, Tracking], None]] = {}
    topics = set(projection.topics)
    wanted = [*topics, *([extra[0]] if extra else [])]
    decoded = 0
    for record in records(source, stop=upto, topics=wanted):
        event = decode(record)
        decoded += 1
        if decoded % TICK == 0:
            progress.value = record.position
        if extra is not None and record.topic == extra[0]:
            extra[1](event)
        if record.topic in topics:
            handler = handlers.get(type(event))
            if handler is None:
                handler = handlers[type(event)] = _handler(projection, type(event))
            handler(event, Tracking(source.name, record.position))
    progress.value = upto
    return decoded


def _compare(view: str, live: dict[str, Any], rebuilt: dict[str, Any],
             differences: list[Difference]) -> int:
    for key in sorted(set(live) | set(rebuilt)):
        if live.get(key) != rebuilt.get(key):
            differences.append(Difference(view, key, live.get(key), rebuilt.get(key)))
    return len(set(live) | set(rebuilt))


@dataclass(frozen=True)
class _Result:
    view: str
    covered: int  # log positions up to the live view's
    decoded: int
    compared: int
    differences: list[Difference]


MAX_DIFFERENCES = 1000  # per view: enough to see what is wrong


def _open(settings: Settings, which: str, view: Callable[[str, Path], Any]) -> tuple[Any, Any, int]:
    """(application, live view, the view's tracked position) in a worker process."""
    from adapters.bootstrap import build_ca, build_portal, opening

    build = build_ca if which == "ca" else build_portal
    app = opening()(build, settings, SystemClock())
    live = opening()(view, settings.store_url(which), settings.data_dir)
    return app, live, live.max_tracking_id(app.name) or 0


def _status(settings: Settings, scratch: Path, progress: Any) -> _Result:
    ca, live, upto = _open(settings, "ca", status_view)
    status = RevocationStatusProjection(_MemoryStatus())
    decoded = _feed(status, ca, upto, progress)
    scratch_view = status_view("", scratch)
    assert isinstance(scratch_view, SQLiteStatusView)
    rebuilt = {serial: scratch_view.stored(row) for serial, row in status.view.by_serial.items()}
    scratch_view.save_stored(list(rebuilt.values()), None)
    if not isinstance(live, SQLiteStatusView):  # compared as the live store holds them
        rebuilt = {serial: live.stored(row) for serial, row in status.view.by_serial.items()}
    differences: list[Difference] = []
    compared = _compare("revocation_status", live.stored_rows(), rebuilt, differences)
    ca.close()
    return _Result("revocation_status", upto, decoded, compared, differences[:MAX_DIFFERENCES])


def _ocsp(settings: Settings, scratch: Path, progress: Any) -> _Result:
    ca, live, upto = _open(settings, "ca", ocsp_store)
    answers = _Answers(_MemoryOcsp())
    decoded = _feed(answers, ca, upto, progress)
    rows = list(answers.view.by_serial.values())
    ocsp_store("", scratch).save(rows, None)
    differences: list[Difference] = []
    compared = _compare("ocsp_responses", live.answers(), {
        r.serial: (r.status, r.reason, r.revoked_at, r.cause_position) for r in rows},
        differences)
    ca.close()
    return _Result("ocsp_responses", upto, decoded, compared, differences[:MAX_DIFFERENCES])


def _mail(settings: Settings, scratch: Path, progress: Any) -> _Result:
    portal, live, upto = _open(settings, "portal", mail_outbox)
    mails = NotificationProjection(_MemoryMail())
    owners: dict[UUID, str] = {}
    recipients: dict[str, Recipient] = {}

    def remember_owner(event: Any) -> None:
        owners[event.originator_id] = event.user_id

    def recipient(user_id: str) -> Recipient:
        if user_id not in recipients:
            partner = portal.partner(user_id)
            recipients[user_id] = Recipient(user_id, partner.email, partner.language)
        return recipients[user_id]

    mails.owner = lambda request_id: owners.get(request_id) or portal.request(request_id).user_id
    mails.recipient = recipient
    mails.clock_now = portal.clock.now
    decoded = _feed(mails, portal, upto, progress,
                    (get_topic(CertificateRequest.CsrSubmitted), remember_owner))
    mail_outbox("", scratch).add(mails.view.all(), None)

    def content(mail: Mail) -> tuple[Any, ...]:
        return (mail.kind, mail.recipient, mail.language, mail.params)

    differences: list[Difference] = []
    compared = _compare(
        "mail_outbox", {m.id: content(m) for m in live.all() if "." in m.id
                        and not m.id.startswith("reminder.")},
        {m.id: content(m) for m in mails.view.all()}, differences)
    portal.close()
    return _Result("mail_outbox", upto, decoded, compared, differences[:MAX_DIFFERENCES])


_VIEWS: dict[str, Callable[[Settings, Path, Any], _Result]] = {
    "revocation_status": _status, "ocsp_responses": _ocsp, "mail_outbox": _mail}


def _worker(view: str, settings: Settings, scratch: Path, progress: Any) -> _Result:
    return _VIEWS[view](settings, scratch, progress)


def total_positions(ca: Any, portal: Any) -> int:
    """What the progress of ``replay`` runs up to: each view's log, once per view."""
    return 2 * (ca.recorder.max_notification_id() or 0) + (
        portal.recorder.max_notification_id() or 0)


def replay(settings: Settings, scratch: Path | None = None,
           tick: Callable[[int], None] | None = None, processes: int = 2) -> ReplayReport:
    """Rebuild each view in a process of its own (``processes`` at a time: the views are
    independent, so both cores work) and compare it with the live one."""
    started = time.perf_counter()
    scratch = scratch or Path(tempfile.mkdtemp(prefix="partner-ca-replay-"))
    context = multiprocessing.get_context("spawn")  # no inherited database connections
    manager = context.Manager()
    positions = [manager.Value("q", 0) for _ in _VIEWS]
    seen = 0

    def report() -> None:
        nonlocal seen
        reached = sum(position.value for position in positions)
        if tick is not None and reached > seen:
            tick(reached - seen)
            seen = reached

    with context.Pool(processes) as pool:
        pending = [pool.apply_async(_worker, (view, settings, scratch, position))
                   for view, position in zip(_VIEWS, positions, strict=True)]
        while not all(job.ready() for job in pending):
            time.sleep(0.2)
            report()
        results = [job.get() for job in pending]
    report()
    manager.shutdown()
    covered = max(r.covered for r in results if r.view != "mail_outbox") + next(
        r.covered for r in results if r.view == "mail_outbox")
    return ReplayReport(covered, sum(r.decoded for r in results), time.perf_counter() - started,
                        {r.view: r.compared for r in results},
                        [d for r in results for d in r.differences])
