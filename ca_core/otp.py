"""OneTimePassword aggregate: rules R1 (issue, supersede, expire) and R2 (login)."""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import event

from ca_core.credentials import verify_otp
from ca_core.errors import Conflict, NotAuthenticated
from ca_core.eventmodel import Aggregate


class OtpRefused(NotAuthenticated):
    """R2: the OTP cannot open a session (the code says why)."""

    code = "otp-invalid"


class SessionUsed(Conflict, OtpRefused):
    """R3: the enrollment session has had its request."""

    code = "session-used"


class OneTimePassword(Aggregate):
    """An OTP for one user in one business module. Only its hash is stored."""

    class OtpIssued(Aggregate.Created):
        private_fields: ClassVar[frozenset[str]] = frozenset({"otp_hash"})
        user_id: str
        module: str
        otp_hash: str
        issued_by: str
        expires_at: datetime

    class OtpRedeemed(Aggregate.Event):
        session_expires_at: datetime

    class OtpAttemptFailed(Aggregate.Event):
        attempts: int

    class OtpLocked(Aggregate.Event):
        user_id: str
        module: str
        attempts: int

    class OtpSuperseded(Aggregate.Event):
        superseded_by: UUID

    class OtpExpired(Aggregate.Event):
        pass

    @event(OtpIssued)
    def __init__(
        self,
        user_id: str,
        module: str,
        otp_hash: str,
        issued_by: str,
        expires_at: datetime,
        timestamp: datetime,
    ) -> None:
        self.user_id = user_id
        self.module = module
        self.otp_hash = otp_hash
        self.issued_by = issued_by
        self.expires_at = expires_at
        self.state = "issued"
        self.attempts = 0
        self.session_expires_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.state == "issued"

    # R2 ---------------------------------------------------------------
    def check_otp_usable(self, now: datetime) -> None:
        """R2: an expired, superseded, used or locked OTP is refused with its reason."""
        if self.state == "redeemed":
            raise OtpRefused("the one-time password has already been used", code="otp-used")
        if self.state == "superseded":
            raise OtpRefused(
                "the one-time password was replaced by a newer one", code="otp-superseded"
            )
        if self.state == "locked":
            raise OtpRefused(
                "the one-time password is locked after too many wrong attempts; "
                "ask the module administrator for a new one",
                code="otp-locked",
            )
        if self.state == "expired" or now >= self.expires_at:
            raise OtpRefused("the one-time password has expired", code="otp-expired")

    def redeem(self, candidate: str, now: datetime, session_lifetime: timedelta) -> bool:
        """Try the OTP. True: a session is open. False: a wrong attempt was recorded."""
        self.check_otp_usable(now)
        if verify_otp(candidate, self.otp_hash):
            self._redeemed(session_expires_at=now + session_lifetime, timestamp=now)
            return True
        return False

    def record_failed_attempt(self, now: datetime, max_attempts: int) -> None:
        """R2: five wrong attempts lock the OTP."""
        attempts = self.attempts + 1
        self._attempt_failed(attempts=attempts, timestamp=now)
        if attempts >= max_attempts:
            self._locked(user_id=self.user_id, module=self.module, attempts=attempts,
                         timestamp=now)

    def check_session_open(self, now: datetime) -> None:
        """An enrollment session lives for a short time after the OTP was redeemed."""
        if self.state != "redeemed" or self.session_expires_at is None:
            raise OtpRefused("no enrollment session: log in with the one-time password first",
                             code="session-required")
        if now >= self.session_expires_at:
            raise OtpRefused("the enrollment session has expired; log in again",
                             code="session-expired")

    # R1 ---------------------------------------------------------------
    def supersede(self, new_otp_id: UUID, now: datetime) -> None:
        """R1: a new OTP for the same user and module replaces the unused old one."""
        if self.is_open:
            self._superseded(superseded_by=new_otp_id, timestamp=now)

    def expire_if_due(self, now: datetime) -> bool:
        """R1/R11: an unused OTP expires 21 days after it was issued."""
        if self.is_open and now >= self.expires_at:
            self._expired(timestamp=now)
            return True
        return False

    @event(OtpRedeemed)
    def _redeemed(self, session_expires_at: datetime, timestamp: datetime) -> None:
        self.state = "redeemed"
        self.session_expires_at = session_expires_at

    @event(OtpAttemptFailed)
    def _attempt_failed(self, attempts: int, timestamp: datetime) -> None:
        self.attempts = attempts

    @event(OtpLocked)
    def _locked(self, user_id: str, module: str, attempts: int, timestamp: datetime) -> None:
        self.state = "locked"

    @event(OtpSuperseded)
    def _superseded(self, superseded_by: UUID, timestamp: datetime) -> None:
        self.state = "superseded"

    @event(OtpExpired)
    def _expired(self, timestamp: datetime) -> None:
        self.state = "expired"


def otps_a_guess_counts_against(history: list[OneTimePassword], module: str | None,
                                now: datetime) -> list[OneTimePassword]:
    """R2: the open OTPs a wrong guess could have opened — the named module's if it has one
    open, else every open OTP of the user (a guess naming a module without an open OTP is
    aimed at none we can tell, so it is counted against all of them: naming another module
    never sidesteps the lock-out)."""
    still_open = [o for o in history if o.is_open and now < o.expires_at]
    named = [o for o in still_open if o.module == module]
    return named if named else still_open


class DueOtps:
    """The OTPs issued, by the time they expire (R1): ``due`` names those whose time has
    come (used, superseded or already expired ones included: the aggregate says), until
    ``drop_due`` forgets them once they were seen to."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, UUID]] = []

    def add(self, issued: Any) -> None:
        heapq.heappush(self._heap, (issued.expires_at, issued.originator_id))

    def due(self, now: datetime) -> list[UUID]:
        return [otp_id for expires_at, otp_id in self._heap if expires_at <= now]

    def drop_due(self, now: datetime) -> None:
        while self._heap and self._heap[0][0] <= now:
            heapq.heappop(self._heap)
