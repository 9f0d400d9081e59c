"""The read models in memory, on eventsourcing's POPO tracking recorder: every port method,
for unit tests of the projections and for ``audit replay``'s rebuild (no stubs). The
tracking record goes first (the public ``insert_tracking``): a position already recorded
raises before any row changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder

from ca_core.certificate import CertificateStatus
from ca_core.crl import RevokedEntry
from projections.notifications import Mail, MailOutbox
from projections.ocsp import CA_PREFIX, OcspStore, StoredResponse
from projections.status import StatusRow, StatusView


class MemoryStatusView(POPOTrackingRecorder, StatusView):
    def __init__(self) -> None:
        super().__init__()
        self.by_serial: dict[str, StatusRow] = {}

    def save_rows(self, rows: list[StatusRow], tracking: Tracking | None) -> None:
        if tracking is not None:  # first: a position seen before changes nothing
            self.insert_tracking(tracking)
        for row in rows:
            self.by_serial[row.serial] = row

    def get(self, serial: str) -> StatusRow | None:
        return self.by_serial.get(serial)

    def for_user(self, user_id: str) -> list[StatusRow]:
        return sorted((r for r in self.by_serial.values() if r.user_id == user_id),
                      key=lambda r: (r.not_before, r.serial))

    def rows(self) -> list[StatusRow]:
        return [self.by_serial[s] for s in sorted(self.by_serial)]

    def revoked_entries(self) -> list[RevokedEntry]:
        return [RevokedEntry(r.serial, r.changed_at or r.not_before, r.reason or "unspecified")
                for r in self.by_serial.values() if r.status == CertificateStatus.REVOKED]

    def revoked_position(self) -> int:
        return max((r.cause_position for r in self.by_serial.values()
                    if r.status == CertificateStatus.REVOKED), default=0)


class MemoryOcspStore(POPOTrackingRecorder, OcspStore):
    def __init__(self) -> None:
        super().__init__()
        self.by_serial: dict[str, StoredResponse] = {}

    def save(self, rows: list[StoredResponse], tracking: Tracking | None) -> None:
        if tracking is not None:  # first: a position seen before changes nothing
            self.insert_tracking(tracking)
        for row in rows:
            old = self.by_serial.get(row.serial)
            if old is None or old.cause_position <= row.cause_position:
                self.by_serial[row.serial] = row

    def get(self, serial: str) -> StoredResponse | None:
        return self.by_serial.get(serial)

    def due(self, signed_before: datetime, signer_serials: str | Sequence[str],
            limit: int) -> list[StoredResponse]:
        current = {signer_serials} if isinstance(signer_serials, str) else set(signer_serials)
        found = sorted((r for r in self.by_serial.values() if not r.serial.startswith(CA_PREFIX)
                        and (r.this_update < signed_before or r.signer_serial not in current)),
                       key=lambda r: r.this_update)
        return found[:limit]

    def drop_signed_by(self, signer_serials: Sequence[str]) -> None:
        gone = set(signer_serials)
        for serial in [s for s, r in self.by_serial.items() if r.signer_serial in gone]:
            del self.by_serial[serial]

    def rows(self) -> list[StoredResponse]:
        return [self.by_serial[s] for s in sorted(self.by_serial)
                if not s.startswith(CA_PREFIX)]

    def partition(self, part: int, parts: int) -> list[StoredResponse]:
        digits = {d for i, d in enumerate("0123456789ABCDEF") if i % parts == part}
        return [r for r in self.by_serial.values() if r.serial[-1:] in digits]

    def newest_change(self) -> datetime | None:
        return max((r.this_update for r in self.by_serial.values()), default=None)

    def oldest_signing(self) -> datetime | None:
        return min((r.this_update for r in self.by_serial.values()), default=None)

    def changed_since(self, moment: datetime | None) -> list[tuple[str, datetime]]:
        return [(r.serial, r.this_update) for r in self.by_serial.values()
                if moment is None or r.this_update > moment]


class MemoryMailOutbox(POPOTrackingRecorder, MailOutbox):
    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, Mail] = {}

    def add(self, mails: list[Mail], tracking: Tracking | None) -> int:
        if tracking is not None:  # first: a position seen before changes nothing
            self.insert_tracking(tracking)
        added = 0
        for mail in mails:
            if mail.id not in self.by_id:
                self.by_id[mail.id] = mail
                added += 1
        return added

    def due(self, now: datetime, limit: int = 100) -> list[Mail]:
        pending = [m for m in self.by_id.values() if m.state == "pending"
                   and m.next_attempt_at is not None and m.next_attempt_at <= now]
        return sorted(pending, key=lambda m: (m.next_attempt_at, m.id))[:limit]

    def all(self) -> list[Mail]:
        return [self.by_id[k] for k in sorted(self.by_id)]

    def mark_sent(self, mail_id: str, at: datetime) -> None:
        self.by_id[mail_id] = replace(self.by_id[mail_id], state="sent", sent_at=at)

    def mark_failed(self, mail_id: str, attempts: int, retry_at: datetime, error: str,
                    give_up: bool) -> None:
        self.by_id[mail_id] = replace(self.by_id[mail_id], attempts=attempts,
                                      next_attempt_at=retry_at, last_error=error[:500],
                                      state="failed" if give_up else "pending")
