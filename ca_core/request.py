"""CertificateRequest aggregate (portal side): R3 request, R4 pickup, R7 renewal, R9 user revocation.

It is also the portal's record of the certificate that answered the request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.domain import event

from ca_core.certificate import CertificateStatus, effective_status
from ca_core.credentials import verify_password
from ca_core.errors import Conflict, Forbidden, NotFound, TooManyAttempts
from ca_core.eventmodel import Aggregate

MIN_REVOCATION_PASSWORD = 8


class RequestRefused(Conflict):
    """The request is not in the state the command needs (not ready, rejected, used)."""

    code = "request-refused"


class RevocationPasswordRefused(RequestRefused):
    """R3: the revocation password typed at request time breaks a rule."""

    code = "revocation-password-refused"
    http_status = 422


class CertificateRefused(Forbidden, RequestRefused):
    """R9: this certificate cannot be revoked by its user (unknown, revoked, expired) or the
    revocation password is wrong."""

    code = "certificate-refused"


class RevocationLockedOut(TooManyAttempts):
    """R9: the revocation password is locked after too many wrong attempts."""

    code = "revocation-locked"


class PickupLinkInvalid(NotFound, RequestRefused):
    code = "pickup-link-invalid"


def check_revocation_passwords(first: str, second: str) -> None:
    """R3: the revocation password is typed twice and both entries must match."""
    if first != second:
        raise RevocationPasswordRefused("the two revocation password entries do not match",
                             code="revocation-password-mismatch")
    if len(first) < MIN_REVOCATION_PASSWORD:
        raise RevocationPasswordRefused(
            f"the revocation password must have at least {MIN_REVOCATION_PASSWORD} characters",
            code="revocation-password-too-short",
        )


def renewed_still_valid(renewed: CertificateRequest) -> bool:
    """R7: the certificate a renewal renews is neither revoked nor being revoked."""
    return (renewed.certificate_status != CertificateStatus.REVOKED
            and not renewed.revocation_pending)


def check_renewal_pickup_allowed(renewed: CertificateRequest) -> None:
    """R7 with R9/R10: a renewal is picked up only while the certificate it renews has not
    been revoked — a session opened before a keyCompromise revocation could otherwise
    collect a certificate for a thief's key."""
    if not renewed_still_valid(renewed):
        raise RequestRefused(f"certificate {renewed.serial}, which this renewal renews, has "
                             "been revoked; the renewal is void — start over with a new "
                             "one-time password", code="renewal-void")


class CertificateRequest(Aggregate):
    """One certificate request and, once answered, the portal's view of its certificate."""

    class CsrSubmitted(Aggregate.Created):
        private_fields: ClassVar[frozenset[str]] = frozenset(
            {"csr_pem", "revocation_password_hash"})
        user_id: str
        module: str
        kind: str
        renews_serial: str | None
        csr_pem: str
        revocation_password_hash: str

        def apply(self, aggregate: Any) -> None:
            aggregate.apply_submitted(self)

    class CsrRejected(Aggregate.Event):
        code: str
        reason: str

    class CertificateReady(Aggregate.Event):
        private_fields: ClassVar[frozenset[str]] = frozenset({"certificate_pem"})
        serial: str
        not_before: datetime
        not_after: datetime
        certificate_pem: str

    class CertificatePickedUp(Aggregate.Event):
        serial: str
        via: str

    class RevocationSubmitted(Aggregate.Event):
        serial: str
        reason: str
        requested_by: str

    class RevocationConfirmed(Aggregate.Event):
        serial: str
        reason: str
        revoked_at: datetime

    class ExpiryNoted(Aggregate.Event):
        serial: str
        not_after: datetime

    class RevocationPasswordFailed(Aggregate.Event):
        """R9: a wrong revocation password was given (the password itself is never kept)."""

        serial: str
        attempts: int

    class RevocationLocked(Aggregate.Event):
        """R9: too many wrong revocation passwords; only ops can lift it (or revoke)."""

        serial: str
        attempts: int

    class RevocationUnlocked(Aggregate.Event):
        serial: str
        unlocked_by: str

    @staticmethod
    def create_id(*_: Any, otp_id: UUID | None = None, attempt: int = 0, **__: Any) -> UUID:
        return CertificateRequest.id_for_session(otp_id, attempt) if otp_id else uuid4()

    @staticmethod
    def id_for_session(otp_id: UUID, attempt: int = 0) -> UUID:
        """The request ids of an enrollment session derive from the redeemed OTP (and, after
        a rejected request, from the attempt): two submissions of one never both land."""
        suffix = f":{attempt}" if attempt else ""
        return uuid5(NAMESPACE_URL, f"partner-ca:request:{otp_id}{suffix}")

    @classmethod
    def submit(
        cls,
        *,
        user_id: str,
        module: str,
        csr_pem: str,
        revocation_password_hash: str,
        now: datetime,
        otp_id: UUID | None = None,
        renews_serial: str | None = None,
        attempt: int = 0,
    ) -> CertificateRequest:
        return cls._create(
            cls.CsrSubmitted,
            id=cls.create_id(otp_id=otp_id, attempt=attempt),
            user_id=user_id,
            module=module,
            kind="renewal" if renews_serial else "new",
            renews_serial=renews_serial,
            csr_pem=csr_pem,
            revocation_password_hash=revocation_password_hash,
            timestamp=now,
        )

    def apply_submitted(self, e: CsrSubmitted) -> None:
        self.user_id = e.user_id
        self.module = e.module
        self.kind = e.kind
        self.renews_serial = e.renews_serial
        self.revocation_password_hash = e.revocation_password_hash
        self.csr_pem = e.csr_pem  # the key the CA's certificate must carry (checked on arrival)
        self.state = "submitted"
        self.serial: str | None = None
        self.not_before: datetime | None = None
        self.not_after: datetime | None = None
        self.certificate_pem: str | None = None
        self.rejection: str | None = None
        self.certificate_status: str | None = None
        self.revocation_pending = False
        self.revocation_failures = 0
        self.revocation_locked = False
        self.revocation_reason: str | None = None

    # R4 ----------------------------------------------------------------
    def check_pickup_allowed(self) -> None:
        """R4: a certificate can be picked up once, after it is ready."""
        if self.state == "submitted":
            raise RequestRefused("the certificate is not ready yet", code="certificate-not-ready")
        if self.state == "rejected":
            raise RequestRefused(f"the request was rejected: {self.rejection}",
                                 code="request-rejected")
        if self.state == "picked_up":
            raise RequestRefused("the certificate has already been picked up",
                                 code="pickup-used")

    # R7 ----------------------------------------------------------------
    def check_renewal_allowed(self, now: datetime) -> None:
        """R7: renewal only while the current certificate is valid (not expired, not revoked)."""
        self.check_certificate_valid(now, action="renew")

    def check_certificate_valid(self, now: datetime, action: str) -> None:
        if self.serial is None or self.not_after is None:
            raise CertificateRefused("no certificate was issued for this request",
                                 code="certificate-unknown")
        refused = RequestRefused if action == "renew" else CertificateRefused
        if self.certificate_status == CertificateStatus.REVOKED or self.revocation_pending:
            raise refused(f"cannot {action}: certificate {self.serial} is revoked",
                                 code="renewal-not-allowed" if action == "renew"
                                 else "certificate-revoked")
        if effective_status(self.certificate_status or CertificateStatus.GOOD, self.not_after,
                            now) == CertificateStatus.EXPIRED:
            raise refused(f"cannot {action}: certificate {self.serial} has expired",
                                 code="renewal-not-allowed" if action == "renew"
                                 else "certificate-expired")

    # R9 ----------------------------------------------------------------
    def check_revocation_password(self, password: str, now: datetime, max_attempts: int) -> bool:
        """R9: the user revokes with the revocation password given at request time. A wrong
        one is recorded (False: the caller saves and refuses); after ``max_attempts`` wrong
        ones the revocation password is locked until ops lift it."""
        if self.revocation_locked:
            raise RevocationLockedOut(f"the revocation password of {self.serial} is locked after "
                                      "too many wrong attempts; ask ops (or have ops revoke)")
        if verify_password(password, self.revocation_password_hash):
            return True
        assert self.serial is not None
        attempts = self.revocation_failures + 1
        self._revocation_password_failed(serial=self.serial, attempts=attempts, timestamp=now)
        if attempts >= max_attempts:
            self._revocation_locked(serial=self.serial, attempts=attempts, timestamp=now)
        return False

    def unlock_revocation(self, by: str, now: datetime) -> bool:
        if not self.revocation_locked and not self.revocation_failures:
            return False
        assert self.serial is not None
        self._revocation_unlocked(serial=self.serial, unlocked_by=by, timestamp=now)
        return True

    @event(RevocationPasswordFailed)
    def _revocation_password_failed(self, serial: str, attempts: int,
                                    timestamp: datetime) -> None:
        self.revocation_failures = attempts

    @event(RevocationLocked)
    def _revocation_locked(self, serial: str, attempts: int, timestamp: datetime) -> None:
        self.revocation_locked = True

    @event(RevocationUnlocked)
    def _revocation_unlocked(self, serial: str, unlocked_by: str, timestamp: datetime) -> None:
        self.revocation_locked = False
        self.revocation_failures = 0

    def submit_revocation(self, reason: str, requested_by: str, now: datetime) -> None:
        assert self.serial is not None
        self._revocation_submitted(serial=self.serial, reason=reason,
                                   requested_by=requested_by, timestamp=now)

    @event(CsrRejected)
    def reject(self, code: str, reason: str, timestamp: datetime) -> None:
        self.state = "rejected"
        self.rejection = reason

    @event(CertificateReady)
    def certificate_ready(
        self,
        serial: str,
        not_before: datetime,
        not_after: datetime,
        certificate_pem: str,
        timestamp: datetime,
    ) -> None:
        self.state = "ready"
        self.serial = serial
        self.not_before = not_before
        self.not_after = not_after
        self.certificate_pem = certificate_pem
        self.certificate_status = CertificateStatus.GOOD.value

    @event(CertificatePickedUp)
    def picked_up(self, serial: str, via: str, timestamp: datetime) -> None:
        self.state = "picked_up"

    @event(RevocationSubmitted)
    def _revocation_submitted(
        self, serial: str, reason: str, requested_by: str, timestamp: datetime
    ) -> None:
        self.revocation_pending = True
        self.revocation_reason = reason

    @event(RevocationConfirmed)
    def revocation_confirmed(
        self, serial: str, reason: str, revoked_at: datetime, timestamp: datetime
    ) -> None:
        self.revocation_pending = False
        self.revocation_reason = reason
        self.certificate_status = CertificateStatus.REVOKED.value

    @event(ExpiryNoted)
    def expiry_noted(self, serial: str, not_after: datetime, timestamp: datetime) -> None:
        self.certificate_status = CertificateStatus.EXPIRED.value

