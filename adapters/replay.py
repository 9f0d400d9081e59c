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
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from adapters.logreader import Decoder, records
from adapters.persistence import mail_outbox, ocsp_store, status_view
from adapters.settings import Settings
from ca_core.ocsp import Answer
from ca_core.request import CertificateRequest
from projections.notifications import Mail, MailOutbox, NotificationProjection, Recipient
from projections.ocsp import OcspResponseProjection, OcspStore, StoredResponse
from projections.status import RevocationStatusProjection, StatusRow, StatusView

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
    events: int  # stored records read (every position of both logs up to the live views)
    decoded: int  # of those, the ones a projection follows: decoded and processed
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

    def rows(self) -> list[StatusRow]:
        return [self.by_serial[k] for k in sorted(self.by_serial)]

    def _select(self, where: str, args: tuple[Any, ...]) -> list[StatusRow]:
        raise NotImplementedError("in-memory replay view")

    def revoked_entries(self) -> list[Any]:
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

    def rows(self) -> list[StoredResponse]:
        return [self.by_serial[k] for k in sorted(self.by_serial)]

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


# -- one pass over a log ------------------------------------------------------------------
@dataclass
class _Follower:
    projection: Projection[Any]
    upto: int  # the live view's tracking position


def _handler(projection: Projection[Any], event_type: type) -> Callable[[Any, Tracking], None]:
    """The projection's ``process_event`` for one event type, dispatched once: a
    ``singledispatchmethod`` re-dispatches (and wraps) on every call in Python 3.11."""
    descriptor = inspect.getattr_static(type(projection), "process_event")
    dispatcher = getattr(descriptor, "dispatcher", None)
    if dispatcher is None:
        return projection.process_event
    return functools.partial(dispatcher.dispatch(event_type), projection)


def _scan(source: Any, followers: Sequence[_Follower], extra_topics: Sequence[str],
          on_extra: Callable[[Any], None], tick: Callable[[int], None] | None) -> tuple[int, int]:
    """Feed every follower the events of ``source`` up to its position; returns
    (records read, records decoded)."""
    stop = max((f.upto for f in followers), default=0)
    wanted = {topic for f in followers for topic in f.projection.topics}
    extra = set(extra_topics)
    decode = Decoder(source)
    handlers: dict[tuple[int, type], Callable[[Any, Tracking], None]] = {}
    read = decoded = 0
    for record in records(source, stop=stop):
        read += 1
        if tick is not None and read % TICK == 0:
            tick(TICK)
        if record.topic not in wanted and record.topic not in extra:
            continue
        event = decode(record)
        decoded += 1
        if record.topic in extra:
            on_extra(event)
        if record.topic in wanted:
            tracking = Tracking(source.name, record.position)
            for i, follower in enumerate(followers):
                if record.position <= follower.upto and record.topic in follower.projection.topics:
                    key = (i, type(event))
                    handler = handlers.get(key)
                    if handler is None:
                        handler = handlers[key] = _handler(follower.projection, type(event))
                    handler(event, tracking)
    if tick is not None:
        tick(read % TICK)
    return read, decoded


def _compare(view: str, live: dict[str, Any], rebuilt: dict[str, Any],
             differences: list[Difference]) -> int:
    for key in sorted(set(live) | set(rebuilt)):
        if live.get(key) != rebuilt.get(key):
            differences.append(Difference(view, key, live.get(key), rebuilt.get(key)))
    return len(set(live) | set(rebuilt))


def total_records(ca: Any, portal: Any) -> int:
    """An upper bound of what ``replay`` reads (for progress bars)."""
    return sum((a.recorder.max_notification_id() or 0) for a in (ca, portal))


def replay(ca: Any, portal: Any, settings: Settings, scratch: Path | None = None,
           tick: Callable[[int], None] | None = None) -> ReplayReport:
    started = time.perf_counter()
    scratch = scratch or Path(tempfile.mkdtemp(prefix="partner-ca-replay-"))
    differences: list[Difference] = []
    compared: dict[str, int] = {}

    # the CA's log: revocation status and OCSP answers, in one pass
    live_status = status_view(settings.store_url("ca"), settings.data_dir)
    live_ocsp = ocsp_store(settings.store_url("ca"), settings.data_dir)
    status = RevocationStatusProjection(_MemoryStatus())
    answers = _Answers(_MemoryOcsp())
    answers.clock = ca.clock
    read, decoded = _scan(ca, [_Follower(status, live_status.max_tracking_id(ca.name) or 0),
                               _Follower(answers, live_ocsp.max_tracking_id(ca.name) or 0)],
                          (), lambda _: None, tick)

    # the portal's log: the email outbox (request owners from the same pass)
    live_mail = mail_outbox(settings.store_url("portal"), settings.data_dir)
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
    more_read, more_decoded = _scan(
        portal, [_Follower(mails, live_mail.max_tracking_id(portal.name) or 0)],
        [get_topic(CertificateRequest.CsrSubmitted)], remember_owner, tick)
    read, decoded = read + more_read, decoded + more_decoded

    # the rebuilt views into the scratch store, one transaction each
    status_view("", scratch).save_rows(status.view.rows(), None)
    ocsp_store("", scratch).save(answers.view.rows(), None)
    mail_outbox("", scratch).add(mails.view.all(), None)

    compared["revocation_status"] = _compare(
        "revocation_status", {r.serial: r for r in live_status.rows()},
        {r.serial: r for r in status.view.rows()}, differences)

    def answer(row: StoredResponse) -> tuple[str, str | None, datetime | None, int]:
        return (row.status, row.reason, row.revoked_at, row.cause_position)

    compared["ocsp_responses"] = _compare(
        "ocsp_responses", live_ocsp.answers(),
        {r.serial: answer(r) for r in answers.view.rows()}, differences)

    def content(mail: Mail) -> tuple[Any, ...]:
        return (mail.kind, mail.recipient, mail.language, mail.params)

    compared["mail_outbox"] = _compare(
        "mail_outbox", {m.id: content(m) for m in live_mail.all() if "." in m.id
                        and not m.id.startswith("reminder.")},
        {m.id: content(m) for m in mails.view.all()}, differences)
    return ReplayReport(read, decoded, time.perf_counter() - started, compared, differences)
