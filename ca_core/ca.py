"""The CA application: signs and revokes, taking instructions only from the portal's messages and ops."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import singledispatchmethod
from typing import Any, ClassVar, cast
from uuid import UUID, uuid4

from cryptography.x509.oid import NameOID
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking
from eventsourcing.utils import EnvType, get_topic

from ca_core.authority import (
    AUTHORITY_ID,
    Authority,
    IssuingCa,
    for_generation,
    issuing_key_name,
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
from ca_core.conflicts import on_conflict
from ca_core.crl import MAX_CRL_VALIDITY, RevokedEntry, build_crl
from ca_core.errors import DomainError, NotFound, NotReady
from ca_core.eventmodel import PYDANTIC_ENV, DomainEvent, read_log
from ca_core.expiry import EXPIRY_EVENTS, ExpiryIndex, LastExpiries
from ca_core.keypolicy import checked_csr, csr_fingerprint, spki_fingerprint
from ca_core.messages import CertificateRequested, Message, RevocationRequested
from ca_core.ocsp import Signer, build_ocsp_signer
from ca_core.partner import check_user_id
from ca_core.policy import IssuancePolicy
from ca_core.ports import KeyStore
from ca_core.processing import Batch, MessageDrivenApplication
from ca_core.signatures import SigningKey
from ca_core.x509profile import (
    build_end_entity,
    build_issuing,
    build_root,
    ca_name,
    end_entity_name,
    from_pem,
    new_serial,
    to_pem,
)

ROOT_KEY, ISSUING_KEY = "root", issuing_key_name(0)
#: an issuing CA no longer current is retired once every certificate it signed has expired,
#: and not before this long after the rollover (a CA process may still sign a batch with it)
RETIRE_GRACE = timedelta(hours=1)
#: what the expiry index follows in the CA's log
EXPIRY_TOPICS = tuple(get_topic(e) for e in EXPIRY_EVENTS)
ISSUED_TOPIC = get_topic(Certificate.CertificateIssued)


def _pem_serial(pem: str) -> str:
    return serial_hex(from_pem(pem).serial_number)


class RevokedIssuers:
    """Which issuing CA signed each revoked certificate (from CertificateRevoked events; only
    those of later issuing CAs are kept, the first one's being the default)."""

    def __init__(self) -> None:
        self.generations: dict[str, int] = {}
        self.position = 0

    def extend(self, events: Iterable[tuple[int, Any]]) -> None:
        for position, event in events:
            if getattr(event, "issuer_generation", 0):
                self.generations[event.serial] = event.issuer_generation
            self.position = position


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
class PublishedCrls:
    """DER of the full CRL and of each shard (empty when sharding is off)."""

    full: bytes
    shards: dict[int, bytes]


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
        self._signer: tuple[SigningKey, Any, int] | None = None
        self._issuers: dict[int, tuple[SigningKey, Any]] = {}
        self._serial_candidates: list[int] = []
        self._ocsp: dict[int, Signer] = {}
        self._expiries = ExpiryIndex()  # R11: what is due, read from the log as it grows
        self._revoked_issuers = RevokedIssuers()
        self._last_expiries = LastExpiries()  # retire_due's (expire_due owns _expiries)

    # -- hierarchy ------------------------------------------------------
    def initialise(self, root_name: str = "Partner CA Root",
                   issuing_name: str = "Partner CA Issuing") -> Authority:
        """Create the two-tier hierarchy: a root (P-384) and an issuing CA (P-256)."""
        if AUTHORITY_ID in self.repository:
            raise DomainError("the CA is already initialised", code="ca-already-initialised")
        if self.keys is None:
            raise DomainError("no key store configured", code="no-key-store")
        now = self.clock.now()
        # each key made where it lives (a file, or inside the HSM), the root first
        # the key ceremony, each step an event naming its key (in one transaction)
        root_key, root_key_id = self.keys.generate(ROOT_KEY, "secp384r1")
        org, country = self.issuance.organization, self.issuance.country
        root = build_root(root_key, ca_name(root_name, org, country), now)
        authority = Authority(
            root_name=root_name, issuing_name=issuing_name, root_certificate_pem=to_pem(root),
            issuing_certificate_pem="", issuing_key_id="", root_key_id=root_key_id,
            timestamp=now,
        )
        issuing_key, key_id = self.keys.generate(ISSUING_KEY, "secp256r1")
        issuing = build_issuing(root_key, root, issuing_key, ca_name(issuing_name, org, country),
                                now, self.issuance)
        authority.issuing_ca_certified(
            generation=0, serial=serial_hex(issuing.serial_number),
            certificate_pem=to_pem(issuing), key_name=ISSUING_KEY, key_id=key_id,
            not_before=issuing.not_valid_before_utc, not_after=issuing.not_valid_after_utc,
            timestamp=now)
        self.save(authority)
        return authority

    def rollover(self, issuing_name: str | None = None) -> IssuingCa:
        """A new issuing CA (key made where it lives, certificate signed by the root),
        current from now on: ``SigningKeyRotated``. Needs the root key. The one it replaces
        keeps its CRL and OCSP until the last certificate it signed has expired."""
        if self.keys is None:
            raise DomainError("no key store configured", code="no-key-store")
        authority = self.authority()
        now = self.clock.now()
        generation = max(authority.issuing) + 1
        root_key = self.keys.load(ROOT_KEY)
        root = from_pem(authority.root_certificate_pem)
        name = issuing_name or f"{authority.issuing_name} {generation + 1}"
        key_name = issuing_key_name(generation)
        key, key_id = self.keys.generate(key_name, "secp256r1")
        issuing = build_issuing(root_key, root, key, ca_name(
            name, self.issuance.organization, self.issuance.country), now, self.issuance)
        authority.signing_key_rotated(
            generation=generation, serial=serial_hex(issuing.serial_number),
            certificate_pem=to_pem(issuing), key_name=key_name, key_id=key_id,
            not_before=issuing.not_valid_before_utc, not_after=issuing.not_valid_after_utc,
            previous=authority.current, timestamp=now)
        self.save(authority)
        self._signer = None
        return authority.issuing_ca

    def retire_due(self) -> list[int]:
        """Retire every issuing CA that is no longer current and whose certificates have all
        expired (``IssuingCaRetired``); returns the generations retired."""
        authority = self.authority()
        now = self.clock.now()
        # an index of its own: expire_due (another thread in the embedded role) owns the
        # expiry index
        self._last_expiries.extend(read_log(self, topics=[ISSUED_TOPIC],
                                            start=self._last_expiries.position + 1))
        retired = []
        for ca in authority.active():
            if ca.generation == authority.current:
                continue
            after = authority.issuing.get(ca.generation + 1)
            last = self._last_expiries.last_expiry.get(ca.generation, ca.since)
            if after is not None and now > max(last, after.since + RETIRE_GRACE):
                authority.issuing_ca_retired(generation=ca.generation, last_expiry=last,
                                             timestamp=now)
                retired.append(ca.generation)
        if retired:
            self.save(authority)
        return retired

    def issuing_ca_at(self, at: datetime) -> IssuingCa | None:
        """The issuing CA that was current at ``at`` (from the Authority's own history)."""
        found: IssuingCa | None = None
        authority = self.authority()
        for stored in self.repository.event_store.get(AUTHORITY_ID):
            event = cast(DomainEvent, stored)
            if event.timestamp > at:
                break
            if isinstance(event, Authority.CaInitialised) and 0 in authority.issuing:
                found = authority.issuing[0]
            elif isinstance(event, Authority.IssuingCaCertified | Authority.SigningKeyRotated):
                found = authority.issuing[event.generation]
        return found

    def authority(self) -> Authority:
        try:
            return cast(Authority, self.repository.get(AUTHORITY_ID))
        except AggregateNotFoundError:
            raise CaNotInitialised("the CA is not initialised: run 'partner-ca init'") from None

    def is_initialised(self) -> bool:
        return AUTHORITY_ID in self.repository

    def unlock(self) -> None:
        """Open the issuing keys now: a key store that cannot (wrong passphrase, missing key)
        fails here, before anything is accepted, not at the first request."""
        for ca in self.authority().active():
            self._issuer_of(ca.generation)

    def chain_pem(self) -> str:
        """The issuing CAs still answering for certificates (the current one first), then
        the root, PEM (R12): every certificate of ours verifies with it."""
        a = self.authority()
        return "".join(ca.certificate_pem for ca in a.active()) + a.root_certificate_pem

    def issuance_for(self, generation: int) -> IssuancePolicy:
        """The profile of an issuing CA's certificates: its own CRL and caIssuers URLs."""
        if generation == 0:
            return self.issuance
        p = self.issuance
        return p.model_copy(update={
            "crl_url": for_generation(p.crl_url, generation),
            "crl_shard_url": for_generation(p.crl_shard_url, generation),
            "ca_issuers_url": for_generation(p.ca_issuers_url, generation)})

    def generation_of(self, entries: Sequence[RevokedEntry]) -> dict[int, list[RevokedEntry]]:
        """Revoked entries by the issuing CA that signed them (from the CA's log)."""
        self._revoked_issuers.extend(read_log(self, topics=[get_topic(
            Certificate.CertificateRevoked)], start=self._revoked_issuers.position + 1))
        found: dict[int, list[RevokedEntry]] = {}
        of = self._revoked_issuers.generations.get
        for entry in entries:
            found.setdefault(of(entry.serial, 0), []).append(entry)
        return found

    def publish_crl(self, entries: list[RevokedEntry], log_position: int,
                    validity: timedelta = timedelta(days=1)) -> bytes:
        """Sign the next full CRL (CRL number + 1) and record CrlPublished; returns DER."""
        return self.publish_crls(entries, log_position, validity).full

    def publish_crls(self, entries: list[RevokedEntry], log_position: int,
                     validity: timedelta = timedelta(days=1),
                     generation: int | None = None) -> PublishedCrls:
        """The next full CRL of one issuing CA (default: the current one) and, when sharding
        is on, one CRL per shard, all with its next CRL number; one CrlPublished records them
        and the log position they reflect. ``entries``: that CA's revoked certificates
        (``generation_of`` sorts them).

        The Authority is shared (the OCSP role records its signers there): when another
        process recorded first, the CRL is signed again with the number after theirs."""
        return on_conflict()(self._publish_crls, entries, log_position, validity, generation)

    def _publish_crls(self, entries: list[RevokedEntry], log_position: int,
                      validity: timedelta, generation: int | None) -> PublishedCrls:
        authority = self.authority()
        generation = authority.current if generation is None else generation
        issuer_key, issuer = self._issuer_of(generation)
        policy = self.issuance_for(generation)
        now = self.clock.now()
        number = authority.issuing[generation].crl_number + 1
        full = build_crl(issuer_key, issuer, entries, number, now, validity)
        shards: dict[int, bytes] = {}
        if policy.crl_shards:
            by_shard: dict[int, list[RevokedEntry]] = {k: [] for k in range(policy.crl_shards)}
            for entry in entries:
                by_shard[policy.crl_shard(int(entry.serial, 16)) or 0].append(entry)
            shards = {k: build_crl(issuer_key, issuer, shard, number, now, validity,
                                   distribution_point=policy.crl_shard_url.format(shard=k))
                      for k, shard in by_shard.items()}
        this_update = now.replace(microsecond=0)
        authority.crl_published(crl_number=number, this_update=this_update,
                                next_update=this_update + min(validity, MAX_CRL_VALIDITY),
                                revoked_count=len(entries), log_position=log_position,
                                timestamp=now, shards=len(shards), generation=generation)
        self.save(authority)
        return PublishedCrls(full, shards)

    def ocsp_signer(self, validity: timedelta = timedelta(days=30),
                    renew_before: timedelta = timedelta(days=10)) -> Signer:
        """The current issuing CA's delegated OCSP signer, after ``ocsp_signers``."""
        self.ocsp_signers(validity, renew_before)
        return self.current_ocsp_signer()

    def ocsp_signers(self, validity: timedelta = timedelta(days=30),
                     renew_before: timedelta = timedelta(days=10)) -> dict[int, Signer]:
        """The delegated OCSP signer of every active issuing CA; a new one is issued where
        none exists or it expires within ``renew_before`` (which must exceed the longest
        response validity)."""
        for ca in self.authority().active():
            on_conflict()(self._renew_ocsp_signer_if_due, ca.generation, validity, renew_before)
        return {ca.generation: self.current_ocsp_signer(ca.generation)
                for ca in self.authority().active()}

    def _renew_ocsp_signer_if_due(self, generation: int, validity: timedelta,
                                  renew_before: timedelta) -> None:
        authority = self.authority()
        ca = authority.issuing[generation]
        now = self.clock.now()
        not_after = ca.ocsp_signer_not_after
        if ca.ocsp_signer_pem is not None and not_after is not None and (
                not_after - now >= renew_before) and self._ocsp_key_at_hand(ca):
            return
        self._issue_ocsp_signer(authority, ca, now, validity)

    def root_signer(self) -> Signer:
        """The root itself as the OCSP signer for the issuing CA certificate it issued
        (RFC 6960 §2.6: the CA that issued the certificate may sign the response)."""
        if self.keys is None:
            raise DomainError("no key store configured", code="no-key-store")
        root = from_pem(self.authority().root_certificate_pem)
        return Signer(self.keys.load(ROOT_KEY), root, root)

    def _ocsp_key_store(self) -> KeyStore:
        store = self.ocsp_keys or self.keys
        if store is None:
            raise DomainError("no key store for the OCSP signing key configured",
                              code="no-key-store")
        return store

    def _ocsp_key_at_hand(self, ca: IssuingCa) -> bool:
        """Whether the signer's key is where responders look for it (after the OCSP key
        store was first configured, the signer is replaced once)."""
        return ca.ocsp_signer_key is not None and self._ocsp_key_store().exists(
            ca.ocsp_signer_key)

    def current_ocsp_signer(self, generation: int | None = None) -> Signer:
        """An issuing CA's delegated OCSP signer as recorded (never issues one); default:
        the current CA's. Opens only the OCSP signing key, never a CA key: the OCSP
        responder calls this."""
        authority = self.authority()
        ca = authority.issuing[authority.current if generation is None else generation]
        if ca.ocsp_signer_pem is None or ca.ocsp_signer_key is None:
            raise DomainError("no OCSP signer yet: the CA role issues one when it starts",
                              code="no-ocsp-signer")
        cached = self._ocsp.get(ca.generation)
        if cached is None or cached.serial != _pem_serial(ca.ocsp_signer_pem):
            cached = self._ocsp[ca.generation] = Signer(
                self._ocsp_key_store().load(ca.ocsp_signer_key), from_pem(ca.ocsp_signer_pem),
                from_pem(ca.certificate_pem))
        return cached

    def _issue_ocsp_signer(self, authority: Authority, ca: IssuingCa, now: datetime,
                           validity: timedelta) -> None:
        store = self._ocsp_key_store()
        issuer_key, issuer = self._issuer_of(ca.generation)
        key_name = f"ocsp-{uuid4().hex[:16]}"  # made before its certificate, so named apart
        key, _ = store.generate(key_name, "secp256r1")
        name = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        subject = ca_name(f"{name} OCSP Responder", self.issuance.organization,
                          self.issuance.country)
        cert = build_ocsp_signer(issuer_key, issuer, key, subject, now, validity)
        serial = serial_hex(cert.serial_number)
        authority.ocsp_signer_issued(serial=serial, not_before=cert.not_valid_before_utc,
                                     not_after=cert.not_valid_after_utc,
                                     certificate_pem=to_pem(cert), key_name=key_name,
                                     timestamp=now, generation=ca.generation)
        self.save(authority)

    def _issuer_of(self, generation: int) -> tuple[SigningKey, Any]:
        """An issuing CA's key and certificate (opened once per process)."""
        found = self._issuers.get(generation)
        if found is None:
            if self.keys is None:
                raise DomainError("no key store configured", code="no-key-store")
            ca = self.authority().issuing[generation]
            found = self._issuers[generation] = (self.keys.load(ca.key_name),
                                                 from_pem(ca.certificate_pem))
        return found

    def _issuer(self) -> tuple[SigningKey, Any, int]:
        """The current issuing CA: key, certificate, generation. Read again at each batch
        (``process_batch``), so a rollover made by ``partner-ca ca rollover`` is followed."""
        if self._signer is None:
            generation = self.authority().current
            self._signer = (*self._issuer_of(generation), generation)
        return self._signer

    # -- messages from the portal --------------------------------------
    def process_batch(self, messages: Sequence[Message], tracking: Tracking,
                      rejected: Sequence[tuple[int, str, str]] = ()) -> None:
        self._serial_candidates.clear()  # candidates are drawn afresh for each batch
        if self._signer is not None and self.authority().current != self._signer[2]:
            self._signer = None  # rolled over since the last batch
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
        issuer_key, issuer, generation = self._issuer()
        serial = self._unique_serial(batch)
        cert = build_end_entity(issuer_key, issuer, key,
                                end_entity_name(msg.user_id, msg.module, self.issuance),
                                serial, now, self.issuance_for(generation))
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
