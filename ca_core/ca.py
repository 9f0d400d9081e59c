"""The CA application: signs and revokes, taking instructions only from the portal's messages
and ops. Its key hierarchy (``hierarchy``: ca_core/hierarchy.py), CRL signing (``crls``:
ca_core/crl_signing.py) and OCSP signers (``ocsp``: ca_core/ocsp_signers.py) are
collaborators of this one application, as Boulder splits its CA."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import singledispatchmethod
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking
from eventsourcing.utils import EnvType, get_topic

from ca_core.authority import (
    AUTHORITY_ID,
    Authority,
)
from ca_core.certificate import (
    Certificate,
    CertificateStatus,
    PublicKeyRecord,
    RevocationRefused,
    SigningRequest,
    check_operator_revocation,
    deciding_event,
    effective_status,
    serial_hex,
)
from ca_core.clock import Clock, SystemClock
from ca_core.crl_signing import CrlSigning
from ca_core.errors import DomainError, NotFound, NotReady
from ca_core.eventmodel import PYDANTIC_ENV, read_log
from ca_core.expiry import EXPIRY_EVENTS, ExpiryIndex
from ca_core.hierarchy import KeyHierarchy
from ca_core.keypolicy import checked_csr, csr_fingerprint, spki_fingerprint
from ca_core.messages import CertificateRequested, Message, RevocationRequested
from ca_core.ocsp_signers import OcspSigners
from ca_core.partner import check_user_id
from ca_core.policy import IssuancePolicy
from ca_core.ports import KeyStore
from ca_core.processing import Batch, MessageDrivenApplication
from ca_core.x509profile import (
    build_end_entity,
    end_entity_name,
    new_serial,
    to_pem,
)

#: what the expiry index follows in the CA's log
EXPIRY_TOPICS = tuple(get_topic(e) for e in EXPIRY_EVENTS)


class CertificateNotFound(NotFound):
    code = "certificate-unknown"


class CaNotInitialised(NotReady):
    code = "ca-not-initialised"


@dataclass(frozen=True)
class StatusAnswer:
    """What ops see for one certificate."""

    serial: str
    status: str
    user_id: str
    module: str
    not_before: datetime
    not_after: datetime
    reason: str | None
    changed_at: datetime | None
    changed_by: str | None


@dataclass(frozen=True)
class StatusAt:
    """What the status of a certificate was at a moment, and the event that decided it."""

    serial: str
    at: datetime
    status: str
    reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    event_version: int | None


class CertificateAuthority(MessageDrivenApplication):
    """Signs certificates (R4), records revocations (R9, R10) and expiries (R11)."""

    name = "ca"
    env: ClassVar[dict[str, str]] = dict(PYDANTIC_ENV)
    topics = ()

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        keys: KeyStore | None = None,
        clock: Clock | None = None,
        policy: IssuancePolicy | None = None,
    ) -> None:
        super().__init__(env)
        self.keys = keys
        #: where delegated OCSP signing keys live, apart from the CA keys, so that the OCSP
        #: responder can hold them without any CA secret (None: in ``keys``)
        self.ocsp_keys: KeyStore | None = None
        self.clock: Clock = clock or SystemClock()
        self.issuance = policy or IssuancePolicy()
        self._serial_candidates: list[int] = []
        self._expiries = ExpiryIndex()  # R11: what is due, read from the log as it grows
        #: its collaborators, as Boulder splits its CA: the keys, the CRLs, the OCSP signers
        self.hierarchy = KeyHierarchy(self)
        self.crls = CrlSigning(self)
        self.ocsp = OcspSigners(self)

    def authority(self) -> Authority:
        try:
            return cast(Authority, self.repository.get(AUTHORITY_ID))
        except AggregateNotFoundError:
            raise CaNotInitialised("the CA is not initialised: run 'partner-ca init'") from None

    def is_initialised(self) -> bool:
        return AUTHORITY_ID in self.repository

    # -- messages from the portal --------------------------------------
    def process_batch(self, messages: Sequence[Message], tracking: Tracking,
                      rejected: Sequence[tuple[int, str, str]] = ()) -> None:
        self._serial_candidates.clear()  # candidates are drawn afresh for each batch
        self.hierarchy.follow_rollover()
        super().process_batch(messages, tracking, rejected)

    def prefetch_ids(self, message: Any) -> Iterable[UUID]:
        """What a message will make the CA read, including a fresh serial to check."""
        if isinstance(message, CertificateRequested):
            yield SigningRequest.id_for(message.request_id)
            fingerprint = csr_fingerprint(message.csr_pem)
            if fingerprint is not None:
                yield PublicKeyRecord.id_for(fingerprint)
            if message.renews_serial:
                yield Certificate.id_for(message.renews_serial)
            serial = new_serial()
            self._serial_candidates.append(serial)
            yield Certificate.id_for(serial_hex(serial))
        elif isinstance(message, RevocationRequested):
            yield Certificate.id_for(message.serial)

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: Batch) -> None:
        """Messages of other types are not for the CA."""

    @policy.register
    def _(self, msg: CertificateRequested, batch: Batch) -> None:
        batch.collect_events(*self.decide_issuance(msg, batch))

    @policy.register
    def _(self, msg: RevocationRequested, batch: Batch) -> None:
        try:
            batch.collect_events(*self._revocation(msg.serial, msg.reason, msg.requested_by, batch))
        except DomainError:
            # Unknown serial, expired certificate or bad reason: nothing to record.
            return

    def decide_issuance(self, msg: CertificateRequested, batch: Batch | None = None) -> list[Any]:
        """R3/R4: check the request again on the CA side, then sign it – once per request."""
        if self._exists(SigningRequest.id_for(msg.request_id), batch):
            return []  # a redelivered request changes nothing
        now = self.clock.now()
        try:
            check_user_id(msg.user_id)  # the CN it becomes (a portal is not trusted blindly)
            _csr, key = checked_csr(msg.csr_pem)
            fingerprint = csr_fingerprint(msg.csr_pem) or spki_fingerprint(key)
            record: PublicKeyRecord | None = self._find(PublicKeyRecord.id_for(fingerprint), batch)
            if record is not None:
                record.check_key_reusable(msg.user_id)
            if msg.renews_serial:
                self._check_renewable(msg.renews_serial, now, batch)
        except DomainError as exc:
            return [SigningRequest.rejected(msg.request_id, exc.code, str(exc), now)]
        issuer_key, issuer, generation = self.hierarchy.current_issuer()
        serial = self._unique_serial(batch)
        cert = build_end_entity(issuer_key, issuer, key,
                                end_entity_name(msg.user_id, msg.module, self.issuance),
                                serial, now, self.hierarchy.issuance_for(generation))
        hex_serial = serial_hex(serial)
        certificate = Certificate(
            serial=hex_serial, request_id=msg.request_id, user_id=msg.user_id, module=msg.module,
            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
            key_fingerprint=fingerprint, renews_serial=msg.renews_serial,
            certificate_pem=to_pem(cert), timestamp=now, issuer_generation=generation,
        )
        if record is None:  # a new key: registered and certified in one event
            record = PublicKeyRecord(key_fingerprint=fingerprint, user_id=msg.user_id,
                                     serial=hex_serial, timestamp=now)
        else:
            record.certified(user_id=msg.user_id, serial=hex_serial, timestamp=now)
        return [SigningRequest.accepted(msg.request_id, hex_serial, now), certificate, record]

    def _unique_serial(self, batch: Batch | None) -> int:
        """A fresh serial, checked against the event store (the stored id derives from it).

        Candidates drawn while prefetching a batch were read with the batch.
        """
        while True:
            serial = self._serial_candidates.pop() if self._serial_candidates else new_serial()
            if not self._exists(Certificate.id_for(serial_hex(serial)), batch):
                return serial

    def _check_renewable(self, serial: str, now: datetime, batch: Batch | None) -> None:
        """R7 on the CA side: the certificate being renewed must still be valid."""
        old = self.certificate(serial, batch)
        status = effective_status(old.status, old.not_after, now)
        if status != CertificateStatus.GOOD:
            raise RevocationRefused(f"certificate {serial} is {status}; renewal not allowed",
                                    code="renewal-not-allowed")

    # -- revocation and expiry -----------------------------------------
    def revoke(self, serial: str, reason: str, operator: str) -> bool:
        """R10: revocation by ops, with an RFC 5280 reason and the acting operator recorded."""
        check_operator_revocation(reason, operator)
        events = self._revocation(serial, reason, f"operator:{operator}")
        if events:
            self.save(*events)
        return bool(events)

    def _revocation(self, serial: str, reason: str, by: str,
                    batch: Batch | None = None) -> list[Any]:
        certificate = self.certificate(serial, batch)
        if not certificate.revoke(reason, by, self.clock.now()):
            return []
        events: list[Any] = [certificate]
        if reason == "keyCompromise":
            record = cast(PublicKeyRecord, self._get(
                PublicKeyRecord.id_for(certificate.key_fingerprint), batch))
            record.mark_compromised(serial=certificate.serial, timestamp=self.clock.now())
            events.append(record)
        return events

    def expire_due(self, chunk: int = 500) -> list[str]:
        """R11: record an expiry for every good certificate whose not_after has passed.

        Certificates come from an in-memory index of issued certificates by not_after,
        extended from the log on each call. Saved ``chunk`` per transaction: after a long
        outage many may be due at once, and one huge transaction (a pipeline of 10^5 inserts)
        can stall the driver."""
        now = self.clock.now()
        self._expiries.extend(read_log(self, topics=EXPIRY_TOPICS,
                                       start=self._expiries.position + 1))
        expired: list[Certificate] = []
        done: list[str] = []
        try:
            for certificate_id in self._expiries.due(now):
                certificate = cast(Certificate, self.repository.get(certificate_id))
                if certificate.expire_if_due(now):
                    expired.append(certificate)
                if len(expired) >= chunk:
                    self.save(*expired)
                    done += [c.serial for c in expired]
                    expired = []
            if expired:
                self.save(*expired)
                done += [c.serial for c in expired]
        except Exception:
            # e.g. another CA process recorded the same expiry first: rebuild the index from
            # the log next time rather than lose the entries taken from it
            self._expiries.reset()
            raise
        return done

    # -- queries ---------------------------------------------------------
    def certificate(self, serial: str, batch: Batch | None = None) -> Certificate:
        found = self._find(Certificate.id_for(serial), batch)
        if found is None:
            raise CertificateNotFound(f"no certificate with serial {serial}")
        return cast(Certificate, found)

    def status_of(self, serial: str) -> CertificateStatus:
        """``good``/``revoked``/``expired``/``unknown`` (the portal's R5 status source)."""
        try:
            c = self.certificate(serial)
        except CertificateNotFound:
            return CertificateStatus.UNKNOWN
        return effective_status(c.status, c.not_after, self.clock.now())

    def status_at(self, serial: str, at: datetime) -> StatusAt:
        """Point-in-time status from the certificate's own history (not from any view)."""
        status, reason, cause = deciding_event(
            self.repository.event_store.get(Certificate.id_for(serial)), at)
        return StatusAt(serial, at, status, reason, type(cause).__name__ if cause else None,
                        cause.timestamp if cause else None,
                        cause.originator_version if cause else None)

    def status(self, serial: str) -> StatusAnswer:
        c = self.certificate(serial)
        return StatusAnswer(
            serial=c.serial, status=self.status_of(serial), user_id=c.user_id, module=c.module,
            not_before=c.not_before, not_after=c.not_after, reason=c.revocation_reason,
            changed_at=c.revoked_at if c.status == CertificateStatus.REVOKED else (
                c.modified_on if c.status == CertificateStatus.EXPIRED else None),
            changed_by=c.revoked_by,
        )
