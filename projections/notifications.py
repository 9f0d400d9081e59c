"""Email outbox: the portal's events become mails to send, exactly once per event.

The projection follows the portal's log and records one outbox row per
notifying event in the same transaction as its tracking record, so a row is
never lost or made twice. Rows hold the mail's kind, recipient, language and
parameters only — the text is rendered when sending (adapters/portal/mailer.py), and
the pickup link's token is recomputed there, so no credential sits in the table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from ca_core.certificate import CertificateStatus
from ca_core.eventmodel import read_log
from ca_core.otp import OneTimePassword
from ca_core.request import CertificateRequest

REMINDER_BEFORE = timedelta(days=30)
COLUMNS = ("id", "kind", "recipient", "language", "params", "state", "attempts",
           "next_attempt_at", "sent_at", "last_error")


@dataclass(frozen=True)
class Mail:
    id: str  # unique per event (or per reminder): also the Message-ID
    kind: str  # pickup-link | revocation | expiry-reminder | expiry | otp-locked
    recipient: str
    language: str
    params: dict[str, str]
    state: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    last_error: str | None = field(default=None)


class MailOutbox(TrackingRecorder, ABC):
    """The mails to send, in the projection's and the notifier's words: SQLite embedded,
    PostgreSQL in production (adapters/storage/sql_mail.py), memory
    (adapters/storage/memory_views.py)."""

    @abstractmethod
    def add(self, mails: list[Mail], tracking: Tracking | None) -> int:
        """Insert mails not yet present (by id) with the tracking record; returns how many."""

    @abstractmethod
    def due(self, now: datetime, limit: int = 100) -> list[Mail]:
        """Pending mails whose next attempt is due, oldest first."""

    @abstractmethod
    def all(self) -> list[Mail]:
        """Every mail, by id."""

    @abstractmethod
    def mark_sent(self, mail_id: str, at: datetime) -> None: ...

    @abstractmethod
    def mark_failed(self, mail_id: str, attempts: int, retry_at: datetime, error: str,
                    give_up: bool) -> None:
        """A failed attempt: retried at ``retry_at``, or given up (``failed``)."""


@dataclass(frozen=True)
class Recipient:
    user_id: str
    email: str
    language: str


class NotificationProjection(Projection[MailOutbox]):
    """CertificateReady → pickup link (R4); RevocationConfirmed → notice (R9); ExpiryNoted →
    notice (R11); OtpLocked → lockout notice. Reminders 30 days ahead come from ``remind``."""

    name = "mail_outbox"
    topics = (get_topic(CertificateRequest.CertificateReady),
              get_topic(CertificateRequest.RevocationConfirmed),
              get_topic(CertificateRequest.ExpiryNoted), get_topic(OneTimePassword.OtpLocked))
    #: set before use: who owns a request, and a user's address and language
    owner: Callable[[UUID], str]
    recipient: Callable[[str], Recipient]
    clock_now: Callable[[], datetime]

    def _add(self, e: Any, kind: str, user_id: str, tracking: Tracking, **params: str) -> None:
        to = self.recipient(user_id)
        self.view.add([Mail(id=f"{e.originator_id}.{e.originator_version}", kind=kind,
                            recipient=to.email, language=to.language,
                            params={"user_id": user_id, **params},
                            next_attempt_at=self.clock_now())], tracking)

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, e: CertificateRequest.CertificateReady, tracking: Tracking) -> None:
        self._add(e, "pickup-link", self.owner(e.originator_id), tracking,
                  request_id=str(e.originator_id), serial=e.serial,
                  not_after=e.not_after.isoformat())

    @process_event.register
    def _(self, e: CertificateRequest.RevocationConfirmed, tracking: Tracking) -> None:
        self._add(e, "revocation", self.owner(e.originator_id), tracking, serial=e.serial,
                  reason=e.reason, revoked_at=e.revoked_at.isoformat())

    @process_event.register
    def _(self, e: CertificateRequest.ExpiryNoted, tracking: Tracking) -> None:
        self._add(e, "expiry", self.owner(e.originator_id), tracking, serial=e.serial,
                  not_after=e.not_after.isoformat())

    @process_event.register
    def _(self, e: OneTimePassword.OtpLocked, tracking: Tracking) -> None:
        self._add(e, "otp-locked", e.user_id, tracking, module=e.module,
                  attempts=str(e.attempts))


def remind(outbox: MailOutbox, portal: Any, recipient: Callable[[str], Recipient],
           now: datetime) -> int:
    """Expiry reminders: one per certificate still good within 30 days of notAfter (R11)."""
    mails = []
    for _, ready in read_log(portal, topics=[get_topic(CertificateRequest.CertificateReady)]):
        assert isinstance(ready, CertificateRequest.CertificateReady)
        if not ready.not_after - REMINDER_BEFORE <= now < ready.not_after:
            continue
        request = portal.request(ready.originator_id)
        if request.serial != ready.serial or request.certificate_status != CertificateStatus.GOOD:
            continue
        to = recipient(request.user_id)
        mails.append(Mail(id=f"reminder.{ready.serial}", kind="expiry-reminder",
                          recipient=to.email, language=to.language,
                          params={"user_id": request.user_id, "serial": ready.serial,
                                  "not_after": ready.not_after.isoformat()},
                          next_attempt_at=now))
    return outbox.add(mails, None) if mails else 0
