"""Messages between the Portal (RA) and the CA, whatever carries them (R4, R9).

They are derived from stored domain events, one message per event at most, and
carry no secret: no OTP, no password, no hash, no private key.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal
from uuid import UUID

from eventsourcing.utils import get_topic
from pydantic import BaseModel, ConfigDict

from ca_core.certificate import Certificate, SigningRequest
from ca_core.eventmodel import DomainEvent
from ca_core.otp import OneTimePassword
from ca_core.request import CertificateRequest
from ca_core.treehead import TreeHeads

REQUESTS = "requests"
CA_EVENTS = "ca-events"
PORTAL_EVENTS = "portal-events"
TOPICS = (REQUESTS, CA_EVENTS, PORTAL_EVENTS)
SCHEMA_VERSION = 1


class Message(BaseModel):
    """Base of every message. ``message_id`` names the domain event it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_id: str
    type: str
    occurred_at: datetime

    @property
    def key(self) -> str:
        """Partitioning key: all messages of one request or certificate keep their order."""
        raise NotImplementedError


class CertificateRequested(Message):
    type: Literal["CertificateRequested"] = "CertificateRequested"
    request_id: UUID
    user_id: str
    module: str
    csr_pem: str
    renews_serial: str | None

    @property
    def key(self) -> str:
        return str(self.request_id)


class RevocationRequested(Message):
    type: Literal["RevocationRequested"] = "RevocationRequested"
    serial: str
    reason: str
    requested_by: str

    @property
    def key(self) -> str:
        return self.serial


class CertificateIssued(Message):
    type: Literal["CertificateIssued"] = "CertificateIssued"
    request_id: UUID
    serial: str
    user_id: str
    module: str
    not_before: datetime
    not_after: datetime
    certificate_pem: str

    @property
    def key(self) -> str:
        return str(self.request_id)


class CsrRejected(Message):
    type: Literal["CsrRejected"] = "CsrRejected"
    request_id: UUID
    code: str
    reason: str

    @property
    def key(self) -> str:
        return str(self.request_id)


class CertificateRevoked(Message):
    type: Literal["CertificateRevoked"] = "CertificateRevoked"
    serial: str
    reason: str
    revoked_at: datetime
    revoked_by: str
    request_id: UUID

    @property
    def key(self) -> str:
        return str(self.request_id)


class CertificateExpired(Message):
    type: Literal["CertificateExpired"] = "CertificateExpired"
    serial: str
    not_after: datetime
    request_id: UUID

    @property
    def key(self) -> str:
        return str(self.request_id)


class OtpIssued(Message):
    """Public fact: an OTP was issued (never the OTP itself)."""

    type: Literal["OtpIssued"] = "OtpIssued"
    user_id: str
    module: str
    issued_by: str
    expires_at: datetime

    @property
    def key(self) -> str:
        return self.user_id


class OtpLocked(Message):
    type: Literal["OtpLocked"] = "OtpLocked"
    user_id: str
    module: str
    attempts: int

    @property
    def key(self) -> str:
        return self.user_id


class RequestSubmitted(Message):
    type: Literal["RequestSubmitted"] = "RequestSubmitted"
    request_id: UUID
    user_id: str
    module: str
    kind: str

    @property
    def key(self) -> str:
        return str(self.request_id)


class CertificatePickedUp(Message):
    type: Literal["CertificatePickedUp"] = "CertificatePickedUp"
    request_id: UUID
    serial: str
    via: str

    @property
    def key(self) -> str:
        return str(self.request_id)


class TreeHeadSigned(Message):
    """A signed tree head of one application's log (docs/audit.md): copies outside the
    database. The leaf prefixes themselves stay in the store; their SHA-256 is signed."""

    type: Literal["TreeHeadSigned"] = "TreeHeadSigned"
    application: str
    tree_size: int
    previous_size: int
    root_hash: str
    leaf_prefixes_sha256: str
    key_fingerprint: str
    signature: str
    #: signing time, milliseconds since the Unix epoch, covered by the signature (format v2;
    #: absent in heads signed before it was)
    signed_at_ms: int | None = None

    @property
    def key(self) -> str:
        return self.application


#: Message types by topic; the JSON Schemas in docs/events/ are generated from these.
TOPIC_TYPES: dict[str, tuple[type[Message], ...]] = {
    REQUESTS: (CertificateRequested, RevocationRequested),
    CA_EVENTS: (CertificateIssued, CsrRejected, CertificateRevoked, CertificateExpired,
                TreeHeadSigned),
    PORTAL_EVENTS: (OtpIssued, OtpLocked, RequestSubmitted, CertificatePickedUp,
                    TreeHeadSigned),
}
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.model_fields["type"].default: cls for types in TOPIC_TYPES.values() for cls in types
}


#: Stored-event topics that become messages (so transports can filter the logs they follow).
PORTAL_MESSAGE_TOPICS = (
    get_topic(CertificateRequest.CsrSubmitted),
    get_topic(CertificateRequest.RevocationSubmitted),
)
PORTAL_OUTBOX_TOPICS = (
    *PORTAL_MESSAGE_TOPICS,
    get_topic(OneTimePassword.OtpIssued),
    get_topic(OneTimePassword.OtpLocked),
    get_topic(CertificateRequest.CertificatePickedUp),
    get_topic(TreeHeads.TreeHeadSigned),
)
CA_MESSAGE_TOPICS = (
    get_topic(Certificate.CertificateIssued),
    get_topic(SigningRequest.SigningRequestRejected),
    get_topic(Certificate.CertificateRevoked),
    get_topic(Certificate.CertificateExpired),
)
#: What the CA's relay publishes: its messages and its signed tree heads.
CA_OUTBOX_TOPICS = (*CA_MESSAGE_TOPICS, get_topic(TreeHeads.TreeHeadSigned))


def _mid(e: DomainEvent) -> str:
    return f"{e.originator_id}:{e.originator_version}"


def portal_message(e: DomainEvent) -> Message | None:
    """The message (topic ``requests``) a portal event causes, if any."""
    if isinstance(e, CertificateRequest.CsrSubmitted):
        return CertificateRequested(
            message_id=_mid(e), occurred_at=e.timestamp, request_id=e.originator_id,
            user_id=e.user_id, module=e.module, csr_pem=e.csr_pem, renews_serial=e.renews_serial,
        )
    if isinstance(e, CertificateRequest.RevocationSubmitted):
        return RevocationRequested(
            message_id=_mid(e), occurred_at=e.timestamp, serial=e.serial, reason=e.reason,
            requested_by=e.requested_by,
        )
    return None


def ca_message(e: DomainEvent) -> Message | None:
    """The message (topic ``ca-events``) a CA event causes, if any."""
    if isinstance(e, Certificate.CertificateIssued):
        return CertificateIssued(
            message_id=_mid(e), occurred_at=e.timestamp, request_id=e.request_id,
            serial=e.serial, user_id=e.user_id, module=e.module, not_before=e.not_before,
            not_after=e.not_after, certificate_pem=e.certificate_pem,
        )
    if isinstance(e, SigningRequest.SigningRequestRejected):
        return CsrRejected(message_id=_mid(e), occurred_at=e.timestamp,
                           request_id=e.request_id, code=e.code, reason=e.reason)
    if isinstance(e, Certificate.CertificateRevoked):
        return CertificateRevoked(
            message_id=_mid(e), occurred_at=e.timestamp, serial=e.serial, reason=e.reason,
            revoked_at=e.revoked_at, revoked_by=e.revoked_by, request_id=e.request_id,
        )
    if isinstance(e, Certificate.CertificateExpired):
        return CertificateExpired(message_id=_mid(e), occurred_at=e.timestamp, serial=e.serial,
                                  not_after=e.not_after, request_id=e.request_id)
    return None


def tree_head(application: str, e: DomainEvent) -> TreeHeadSigned | None:
    """The public copy of a signed tree head."""
    if not isinstance(e, TreeHeads.TreeHeadSigned):
        return None
    return TreeHeadSigned(
        message_id=_mid(e), occurred_at=e.timestamp, application=application,
        tree_size=e.tree_size, previous_size=e.previous_size, root_hash=e.root_hash,
        leaf_prefixes_sha256=hashlib.sha256(bytes.fromhex(e.leaf_prefixes)).hexdigest(),
        key_fingerprint=e.key_fingerprint, signature=e.signature, signed_at_ms=e.signed_at_ms)


def portal_outbox(e: DomainEvent) -> list[tuple[str, Message]]:
    """Everything a portal event publishes: the request to the CA and/or a public fact."""
    head = tree_head("portal", e)
    if head is not None:
        return [(PORTAL_EVENTS, head)]
    out: list[tuple[str, Message]] = []
    to_ca = portal_message(e)
    if to_ca is not None:
        out.append((REQUESTS, to_ca))
    fact_id = _mid(e) + ":fact"
    if isinstance(e, CertificateRequest.CsrSubmitted):
        out.append((PORTAL_EVENTS, RequestSubmitted(
            message_id=fact_id, occurred_at=e.timestamp, request_id=e.originator_id,
            user_id=e.user_id, module=e.module, kind=e.kind)))
    elif isinstance(e, OneTimePassword.OtpIssued):
        out.append((PORTAL_EVENTS, OtpIssued(
            message_id=fact_id, occurred_at=e.timestamp, user_id=e.user_id, module=e.module,
            issued_by=e.issued_by, expires_at=e.expires_at)))
    elif isinstance(e, OneTimePassword.OtpLocked):
        out.append((PORTAL_EVENTS, OtpLocked(
            message_id=fact_id, occurred_at=e.timestamp, user_id=e.user_id, module=e.module,
            attempts=e.attempts)))
    elif isinstance(e, CertificateRequest.CertificatePickedUp):
        out.append((PORTAL_EVENTS, CertificatePickedUp(
            message_id=fact_id, occurred_at=e.timestamp, request_id=e.originator_id,
            serial=e.serial, via=e.via)))
    return out


def ca_outbox(e: DomainEvent) -> list[tuple[str, Message]]:
    head = tree_head("ca", e)
    if head is not None:
        return [(CA_EVENTS, head)]
    message = ca_message(e)
    return [(CA_EVENTS, message)] if message is not None else []
