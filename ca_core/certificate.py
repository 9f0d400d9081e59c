"""CA-side aggregates: Certificate (R9–R11), SigningRequest (idempotent issuance), PublicKeyRecord (R3)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from ca_core.crl import REASON_CODES
from ca_core.errors import DomainError
from ca_core.eventmodel import Aggregate
from ca_core.keypolicy import CsrRejected


class CertificateStatus(StrEnum):
    """What the CA says of a certificate (RFC 6960 ``good``/``revoked``; R11's ``expired``).
    Members are strings, so the stored events and views keep the plain words."""

    GOOD = "good"
    REVOKED = "revoked"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # RFC 6960: never issued by this CA


class RevocationReason(StrEnum):
    """RFC 5280 §5.3.1 CRLReason values usable for end-entity certificates, spelled as the RFC
    (and ``x509.ReasonFlags``) spells them; ``code`` is the CRLReason enumeration value."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"

    @property
    def code(self) -> int:
        return REASON_CODES[self.value]

#: the reasons as strings, in RFC order (for help texts and random tests)
REVOCATION_REASONS = tuple(reason.value for reason in RevocationReason)
#: the reasons a partner may give for their own certificate (R9); ``privilegeWithdrawn`` is
#: the registration authority's to state (R10), never the holder's
PARTNER_REVOCATION_REASONS = tuple(r for r in REVOCATION_REASONS if r != "privilegeWithdrawn")


class RevocationRefused(DomainError):
    code = "revocation-refused"


def check_revocation_reason(reason: str) -> RevocationReason:
    """R10: the reason must be an RFC 5280 reason code allowed for end-entity certificates."""
    try:
        return RevocationReason(reason)
    except ValueError:
        raise RevocationRefused(
            f"unknown revocation reason {reason!r}; use one of: {', '.join(REVOCATION_REASONS)}",
            code="revocation-reason-invalid",
        ) from None


def check_partner_revocation_reason(reason: str) -> RevocationReason:
    """R9: a partner revoking their own certificate gives one of the partner's reasons — the
    one check, for the API, the pages and any other client."""
    checked = check_revocation_reason(reason)
    if checked.value not in PARTNER_REVOCATION_REASONS:
        raise RevocationRefused(
            f"{reason!r} is not a reason a certificate holder can give; use one of: "
            f"{', '.join(PARTNER_REVOCATION_REASONS)}", code="revocation-reason-invalid")
    return checked


def check_operator_revocation(reason: str, operator: str) -> RevocationReason:
    """R10: an ops revocation names an RFC 5280 reason and the acting operator. The one check,
    for the portal's ops API and the CA's own command alike."""
    checked = check_revocation_reason(reason)
    if not operator.strip():
        raise RevocationRefused("the acting operator must be named", code="operator-required")
    return checked


def serial_hex(serial: int) -> str:
    """A serial as the log, the views and the stores key it: upper-case hex, 32 digits."""
    return format(serial, "x").upper().rjust(32, "0")


def effective_status(status: str, not_after: datetime | None,
                     now: datetime) -> CertificateStatus:
    """R11 as read: a ``good`` certificate past its notAfter is ``expired`` even before the
    expiry is recorded. The one place this is decided."""
    if status == CertificateStatus.GOOD and not_after is not None and now > not_after:
        return CertificateStatus.EXPIRED
    return CertificateStatus(status)


class SerialInvalid(DomainError):
    code = "serial-invalid"


def parse_serial(text: str) -> str:
    """A serial as people type it (any case, ``0x``, colons, leading zeros dropped) in the
    one form it is kept in (``serial_hex``): ``1a2b`` and ``00001A2B`` are the same."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise SerialInvalid(f"not a hexadecimal serial: {text[:80]!r}") from None
    if not 0 < value < 1 << 160:  # RFC 5280 §4.1.2.2: positive, at most 20 octets
        raise SerialInvalid(f"not a certificate serial (positive, at most 20 octets): "
                            f"{text[:80]!r}")
    return serial_hex(value)


class Certificate(Aggregate):
    """An issued certificate. Its id is derived from the serial, so a serial can exist only once."""

    class CertificateIssued(Aggregate.Created):
        private_fields: ClassVar[frozenset[str]] = frozenset({"certificate_pem"})
        later_fields: ClassVar[frozenset[str]] = frozenset({"issuer_generation"})
        serial: str
        request_id: UUID
        user_id: str
        module: str
        not_before: datetime
        not_after: datetime
        key_fingerprint: str
        renews_serial: str | None
        certificate_pem: str
        issuer_generation: int = 0  # which issuing CA signed it (ca_core/authority.py)

    class RevocationRequested(Aggregate.Event):
        serial: str
        reason: str
        requested_by: str

    class CertificateRevoked(Aggregate.Event):
        later_fields: ClassVar[frozenset[str]] = frozenset({"issuer_generation"})
        serial: str
        request_id: UUID
        reason: str
        revoked_by: str
        revoked_at: datetime
        issuer_generation: int = 0

    class CertificateExpired(Aggregate.Event):
        serial: str
        request_id: UUID
        not_after: datetime

    @staticmethod
    def create_id(*_: Any, serial: str = "", **__: Any) -> UUID:
        return Certificate.id_for(serial)

    @staticmethod
    @lru_cache(maxsize=65536)  # computed several times per message
    def id_for(serial: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"partner-ca:certificate:{serial.upper()}")

    @event(CertificateIssued)
    def __init__(
        self,
        serial: str,
        request_id: UUID,
        user_id: str,
        module: str,
        not_before: datetime,
        not_after: datetime,
        key_fingerprint: str,
        renews_serial: str | None,
        certificate_pem: str,
        timestamp: datetime,
        issuer_generation: int = 0,
    ) -> None:
        self.serial = serial
        self.issuer_generation = issuer_generation
        self.request_id = request_id
        self.user_id = user_id
        self.module = module
        self.not_before = not_before
        self.not_after = not_after
        self.key_fingerprint = key_fingerprint
        self.renews_serial = renews_serial
        self.certificate_pem = certificate_pem
        self.status: str = CertificateStatus.GOOD.value
        self.revocation_reason: str | None = None
        self.revoked_at: datetime | None = None
        self.revoked_by: str | None = None

    def revoke(self, reason: str, by: str, now: datetime) -> bool:
        """R9/R10: record a revocation. Revoking an already revoked certificate changes nothing."""
        reason = check_revocation_reason(reason).value  # the event keeps the RFC's word
        if self.status == CertificateStatus.REVOKED:
            return False
        if self.status == CertificateStatus.EXPIRED:
            raise RevocationRefused(f"certificate {self.serial} has already expired",
                                    code="certificate-expired")
        self._revocation_requested(serial=self.serial, reason=reason, requested_by=by,
                                   timestamp=now)
        self._revoked(serial=self.serial, request_id=self.request_id, reason=reason,
                      revoked_by=by, revoked_at=now, timestamp=now,
                      issuer_generation=self.issuer_generation)
        return True

    def expire_if_due(self, now: datetime) -> bool:
        """R11: once not_after has passed, an expiry is recorded."""
        if (self.status == CertificateStatus.GOOD and effective_status(
                self.status, self.not_after, now) == CertificateStatus.EXPIRED):
            self._expired(serial=self.serial, request_id=self.request_id,
                          not_after=self.not_after, timestamp=now)
            return True
        return False

    @event(RevocationRequested)
    def _revocation_requested(
        self, serial: str, reason: str, requested_by: str, timestamp: datetime
    ) -> None:
        pass

    @event(CertificateRevoked)
    def _revoked(
        self,
        serial: str,
        request_id: UUID,
        reason: str,
        revoked_by: str,
        revoked_at: datetime,
        timestamp: datetime,
        issuer_generation: int = 0,
    ) -> None:
        self.status = CertificateStatus.REVOKED.value
        self.revocation_reason = reason
        self.revoked_at = revoked_at
        self.revoked_by = revoked_by

    @event(CertificateExpired)
    def _expired(
        self, serial: str, request_id: UUID, not_after: datetime, timestamp: datetime
    ) -> None:
        self.status = CertificateStatus.EXPIRED.value


class SigningRequest(Aggregate):
    """The CA's record of one portal request, keyed by the request id: issuance happens once."""

    class SigningRequestAccepted(Aggregate.Created):
        request_id: UUID
        serial: str

        def apply(self, aggregate: Any) -> None:
            aggregate.request_id, aggregate.serial, aggregate.rejection = (
                self.request_id, self.serial, None)

    class SigningRequestRejected(Aggregate.Created):
        request_id: UUID
        code: str
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.request_id, aggregate.serial, aggregate.rejection = (
                self.request_id, None, self.reason)

    @staticmethod
    def create_id(*_: Any, request_id: UUID | None = None, **__: Any) -> UUID:
        assert request_id is not None
        return SigningRequest.id_for(request_id)

    @staticmethod
    @lru_cache(maxsize=65536)  # computed several times per message
    def id_for(request_id: UUID) -> UUID:
        return uuid5(NAMESPACE_URL, f"partner-ca:signing-request:{request_id}")

    @classmethod
    def accepted(cls, request_id: UUID, serial: str, now: datetime) -> SigningRequest:
        return cls._create(cls.SigningRequestAccepted, request_id=request_id, serial=serial,
                           timestamp=now)

    @classmethod
    def rejected(cls, request_id: UUID, code: str, reason: str, now: datetime) -> SigningRequest:
        return cls._create(cls.SigningRequestRejected, request_id=request_id, code=code,
                           reason=reason, timestamp=now)


class PublicKeyRecord(Aggregate):
    """Key registry entry (R3): who a public key was certified to, and whether it is compromised."""

    class PublicKeyCertified(Aggregate.Event):
        user_id: str
        serial: str

    class PublicKeyCompromised(Aggregate.Event):
        serial: str

    class PublicKeyRegistered(Aggregate.Created):
        key_fingerprint: str
        #: the key's first certification (one event instead of two per new key; in stores
        #: written before, a PublicKeyCertified follows a PublicKeyRegistered without them)
        user_id: str | None = None
        serial: str | None = None

    @staticmethod
    def create_id(*_: Any, key_fingerprint: str = "", **__: Any) -> UUID:
        return PublicKeyRecord.id_for(key_fingerprint)

    @staticmethod
    @lru_cache(maxsize=65536)  # computed several times per message
    def id_for(key_fingerprint: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"partner-ca:public-key:{key_fingerprint}")

    @event(PublicKeyRegistered)
    def __init__(self, key_fingerprint: str, timestamp: datetime, user_id: str | None = None,
                 serial: str | None = None) -> None:
        self.key_fingerprint = key_fingerprint
        self.user_id: str | None = user_id
        self.compromised = False

    def check_key_reusable(self, user_id: str) -> None:
        """R3: no key already certified to someone else, or revoked for key compromise."""
        if self.compromised:
            raise CsrRejected("this public key was revoked for key compromise",
                              code="key-compromised")
        if self.user_id is not None and self.user_id != user_id:
            raise CsrRejected("this public key is already certified to another user",
                              code="key-already-certified")

    @event(PublicKeyCertified)
    def certified(self, user_id: str, serial: str, timestamp: datetime) -> None:
        self.user_id = user_id

    @event(PublicKeyCompromised)
    def mark_compromised(self, serial: str, timestamp: datetime) -> None:
        self.compromised = True


def deciding_event(events: Iterable[Any], at: datetime) -> tuple[CertificateStatus, str | None,
                                                                Any | None]:
    """(status, reason, the event that decided it) of one certificate at ``at``, from its
    own events on the CA's log in order — the one decision the CLI (``audit at``,
    ``status --at``) and the auditor page both show (issue 26, item 16)."""
    status: str = CertificateStatus.UNKNOWN
    reason: str | None = None
    cause: Any = None
    not_after: datetime | None = None
    for fact in events:
        if fact.timestamp > at:
            break
        if isinstance(fact, Certificate.CertificateIssued):
            status, cause, not_after = CertificateStatus.GOOD, fact, fact.not_after
        elif isinstance(fact, Certificate.CertificateRevoked):
            status, reason, cause = CertificateStatus.REVOKED, fact.reason, fact
        elif isinstance(fact, Certificate.CertificateExpired):
            status, cause = CertificateStatus.EXPIRED, fact
    return effective_status(status, not_after, at), reason, cause


def deciding_portal_event(events: Iterable[Any], serial: str, at: datetime
                          ) -> tuple[CertificateStatus, str | None, Any | None]:
    """The same decision from what the portal recorded of a certificate (its request's
    ``CertificateReady``, ``RevocationConfirmed``, ``ExpiryNoted``), for a reader without the
    CA's log: (status, reason, the event that decided it) at ``at``."""
    status: str = CertificateStatus.UNKNOWN
    reason: str | None = None
    cause: Any = None
    not_after: datetime | None = None
    for fact in events:
        if fact.timestamp > at or getattr(fact, "serial", None) != serial:
            continue
        kind = type(fact).__name__
        if kind == "CertificateReady":
            status, cause, not_after = CertificateStatus.GOOD, fact, getattr(
                fact, "not_after", None)
        elif kind == "RevocationConfirmed":
            status, reason, cause = CertificateStatus.REVOKED, getattr(fact, "reason", None), fact
        elif kind == "ExpiryNoted":
            status, cause = CertificateStatus.EXPIRED, fact
    return effective_status(status, not_after, at), reason, cause
