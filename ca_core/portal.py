"""The Portal (registration authority): OTPs, requests, pickup, renewal, revocation, and the
CA's answers; its sessions (ca_core/sessions.py) and certificate login
(ca_core/certificate_login.py) are collaborators.

Why it stays one module of about 650 lines: it is one eventsourcing application, and its
aggregates (PortalSession, UsedChallenge and the events of both) must stay where the stored
events' topics name them (``ca_core.portal:…``) — moving a class renames every event of it
already recorded. Every command here also works on the same aggregates in one transaction
(a request, its partner, its OTP), so splitting the commands apart would split that."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, singledispatchmethod
from typing import Any, ClassVar, cast
from uuid import NAMESPACE_URL, UUID, uuid5

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import event
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import EnvType

from ca_core import messages as m
from ca_core.certificate import (
    CertificateStatus,
    check_operator_revocation,
    check_partner_revocation_reason,
    serial_hex,
)
from ca_core.certificate_login import CertificateLogin
from ca_core.clock import Clock, SystemClock
from ca_core.conflicts import retried_on_conflict
from ca_core.credentials import (
    hash_otp,
    hash_password,
    keyed_token,
    new_otp,
    same_token,
    verify_otp,
)
from ca_core.errors import (
    Conflict,
    DomainError,
    NotAuthenticated,
    NotFound,
    NotReady,
    TooManyAttempts,
)
from ca_core.eventmodel import PYDANTIC_ENV, Aggregate
from ca_core.keypolicy import checked_csr, csr_fingerprint, spki_fingerprint
from ca_core.log_index import LogIndex
from ca_core.otp import (
    DueOtps,
    OneTimePassword,
    OtpRefused,
    SessionUsed,
    otps_a_guess_counts_against,
)
from ca_core.partner import PartnerAccount, check_email, check_user_id
from ca_core.policy import PortalPolicy
from ca_core.ports import StatusSource
from ca_core.processing import Batch, MessageDrivenApplication, MessageRefused
from ca_core.request import (
    CertificateRefused,
    CertificateRequest,
    PickupLinkInvalid,
    RequestRefused,
    check_renewal_pickup_allowed,
    check_revocation_passwords,
    renewed_still_valid,
)
from ca_core.sessions import PortalSessions
from ca_core.x509profile import subject_identity

_WRONG_OTP = "the user identifier or one-time password is wrong"
_DECOY_OTP_HASH = hash_otp("decoy")
#: requests one enrollment session may make when the CA rejects the earlier ones (R3)
REQUESTS_PER_SESSION = 3


class UsedChallenge(Aggregate):
    """R5: a certificate-login challenge that opened a session. Its id comes from the
    challenge's nonce, so the store itself refuses a second use, in any portal process."""

    class ChallengeUsed(Aggregate.Created):
        serial: str

    @staticmethod
    def id_for(nonce: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"partner-ca:challenge:{nonce}")

    @classmethod
    def record(cls, nonce: str, serial: str, now: datetime) -> UsedChallenge:
        return cls._create(cls.ChallengeUsed, id=cls.id_for(nonce), serial=serial,
                           timestamp=now)


class PortalSession(Aggregate):
    """A login session: opened by an OTP or certificate login, ended by logout or by ops (or
    by its time). Recorded so that every portal process refuses an ended one and ops can see
    who is logged in; the token itself carries only the session's id."""

    class SessionOpened(Aggregate.Created):
        user_id: str
        kind: str
        module: str
        serial: str | None
        expires_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.apply_opened(self)

    class SessionEnded(Aggregate.Event):
        ended_by: str

    @staticmethod
    def id_for(session_id: str) -> UUID:
        """The session's id is the one its token carries (random, 122 bits)."""
        try:
            return UUID(session_id)
        except ValueError:
            raise NotAuthenticated("the session token is not valid",
                                   code="session-required") from None

    @classmethod
    def open(cls, session_id: str, user_id: str, kind: str, module: str, serial: str | None,
             now: datetime, lifetime: timedelta) -> PortalSession:
        return cls._create(cls.SessionOpened, id=cls.id_for(session_id), user_id=user_id,
                           kind=kind, module=module, serial=serial, expires_at=now + lifetime,
                           timestamp=now)

    def apply_opened(self, e: SessionOpened) -> None:
        self.user_id, self.kind, self.module, self.serial = e.user_id, e.kind, e.module, e.serial
        self.expires_at, self.opened_at = e.expires_at, e.timestamp
        self.ended_by: str | None = None

    @event(SessionEnded)
    def end(self, ended_by: str, timestamp: datetime) -> None:
        self.ended_by = ended_by


@dataclass(frozen=True)
class OpenSession:
    """A session as ops see it (``GET /v1/ops/partners/{user}/sessions``)."""

    session_id: UUID
    user_id: str
    kind: str
    module: str
    serial: str | None
    opened_at: datetime
    expires_at: datetime


@lru_cache(maxsize=8)
def _certificate(pem: str) -> x509.Certificate:
    """A CA certificate parsed once (checked against every certificate the CA sends)."""
    return x509.load_pem_x509_certificate(pem.encode())


@dataclass(frozen=True)
class TrustChain:
    """The CA certificates the portal trusts and hands out with every certificate (R5, R12):
    the issuing CAs still answering for certificates (the current one first; more than one
    after a rollover) and the root."""

    issuing_pems: tuple[str, ...]
    root_pem: str

    @property
    def issuing(self) -> tuple[x509.Certificate, ...]:
        return tuple(_certificate(pem) for pem in self.issuing_pems)

    @property
    def chain_pem(self) -> str:
        return "".join(self.issuing_pems) + self.root_pem

    def issuer_of(self, cert: x509.Certificate) -> str | None:
        """The PEM of the issuing CA that signed ``cert`` (None: none of ours)."""
        for pem in self.issuing_pems:
            try:
                cert.verify_directly_issued_by(_certificate(pem))
            except (ValueError, TypeError, InvalidSignature):
                continue
            return pem
        return None

    def chain_for(self, certificate_pem: str) -> str:
        """The certificate's own chain: the issuing CA that signed it, then the root."""
        issuer = self.issuer_of(_certificate(certificate_pem))
        return (issuer or "") + self.root_pem if issuer else self.chain_pem


@dataclass(frozen=True)
class EnrollmentSession:
    """Opened by an OTP login (R2); allows one certificate request."""

    otp_id: UUID
    user_id: str
    module: str


@dataclass(frozen=True)
class CertificateSession:
    """Opened by a certificate login (R5)."""

    user_id: str
    module: str
    serial: str
    request_id: UUID


@dataclass(frozen=True)
class PickedUpCertificate:
    """What pickup returns (R4): the certificate and its chain (its issuing CA + root)."""

    request_id: UUID
    serial: str
    certificate_pem: str
    chain_pem: str


def _by_serial(index: dict[str, UUID], ready: Any) -> None:
    """The request each certificate came from (a renewal's serial is new: never replaced)."""
    index[ready.serial] = ready.originator_id


class Portal(MessageDrivenApplication):
    """The registration authority. Holds policy; the CA only signs what the portal forwards."""

    name = "portal"
    env: ClassVar[dict[str, str]] = dict(PYDANTIC_ENV)

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        clock: Clock | None = None,
        policy: PortalPolicy | None = None,
        secret: bytes = b"",
        trust: Callable[[], TrustChain] | None = None,
        status_source: StatusSource | None = None,
    ) -> None:
        super().__init__(env)
        self.clock: Clock = clock or SystemClock()
        self.rules = policy or PortalPolicy()
        self.secret = secret or secrets.token_bytes(32)
        self.trust = trust
        self._trusted: TrustChain | None = None  # the chain as last read (issued_by_our_ca)
        self.status_source = status_source
        #: the collaborators: sessions (R2, R5) and certificate login (R5)
        self.sessions = PortalSessions(self, PortalSession, OpenSession)
        self.certificate_login = CertificateLogin(self, UsedChallenge, CertificateSession)
        #: what three questions need from the log, kept as it grows (ca_core/log_index.py)
        self._ready_serials: LogIndex[dict[str, UUID]] = LogIndex(
            self, [CertificateRequest.CertificateReady], {}, _by_serial)
        self._otp_expiries: LogIndex[DueOtps] = LogIndex(
            self, [OneTimePassword.OtpIssued], DueOtps(), DueOtps.add)

    # -- partners (ops) ----------------------------------------------------
    @retried_on_conflict
    def register_partner(self, user_id: str, email: str, modules: list[str],
                         language: str = "cs", registered_by: str = "") -> PartnerAccount:
        check_user_id(user_id)
        check_email(email)
        for module in modules:
            self._check_known_module(module)
        if PartnerAccount.id_for(user_id) in self.repository:
            raise Conflict(f"user {user_id} is already registered", code="user-exists")
        partner = PartnerAccount(user_id=user_id, email=email, language=language,
                                 modules=list(modules), timestamp=self.clock.now(),
                                 registered_by=registered_by)
        self.save(partner)
        return partner

    @retried_on_conflict
    def grant_module(self, user_id: str, module: str, granted_by: str = "") -> None:
        self._check_known_module(module)
        partner = self.partner(user_id)
        partner.grant_module(module, self.clock.now(), granted_by)
        self.save(partner)

    # -- ops on certificates (R10) -------------------------------------------------
    def request_for_serial(self, serial: str) -> CertificateRequest:
        """The request a certificate of this portal came from (ops look-ups; an index of the
        log's CertificateReady events, read once and then as it grows)."""
        request_id = self._ready_serials.current().get(serial)
        if request_id is None:
            raise NotFound(f"no certificate with serial {serial}", code="certificate-unknown")
        return self.request(request_id)

    @retried_on_conflict
    def revoke_as_operator(self, serial: str, reason: str, operator: str) -> None:
        """R10: ops revoke with an RFC 5280 reason; the CA records the operator."""
        check_operator_revocation(reason, operator)
        request = self.request_for_serial(serial)
        request.check_certificate_valid(self.clock.now(), action="revoke")
        request.submit_revocation(reason, f"operator:{operator}", self.clock.now())
        self.save(request)

    def _check_known_module(self, module: str) -> None:
        if module not in self.rules.modules:
            raise DomainError(f"unknown module {module!r}; known: {', '.join(self.rules.modules)}",
                              code="module-unknown")

    def partner(self, user_id: str) -> PartnerAccount:
        try:
            return cast(PartnerAccount, self.repository.get(PartnerAccount.id_for(user_id)))
        except AggregateNotFoundError:
            raise NotFound(f"no user {user_id}", code="user-unknown") from None

    # -- R1 -------------------------------------------------------------------
    @retried_on_conflict
    def issue_otp(self, user_id: str, module: str, issued_by: str) -> tuple[UUID, str]:
        """R1: a fresh OTP for a user in a module; returns (otp id, the OTP shown once)."""
        self._check_known_module(module)
        partner = self.partner(user_id)
        partner.check_module_registered(module)
        now = self.clock.now()
        otp = new_otp()
        fresh = OneTimePassword(user_id=user_id, module=module, otp_hash=hash_otp(otp),
                                issued_by=issued_by, expires_at=now + self.rules.otp_validity,
                                timestamp=now)
        changed: list[Any] = [fresh, partner]
        if module in partner.otps:
            old = self._otp(partner.otps[module])
            old.supersede(fresh.id, now)
            changed.append(old)
        partner.assign_otp(module=module, otp_id=fresh.id, timestamp=now)
        self.save(*changed)
        return fresh.id, otp

    def _otp(self, otp_id: UUID) -> OneTimePassword:
        return cast(OneTimePassword, self.repository.get(otp_id))

    def otp_expires_at(self, otp_id: UUID) -> datetime:
        """When an OTP stops being usable (R1: 21 days after it was issued)."""
        return self._otp(otp_id).expires_at

    def expire_otps(self) -> int:
        """R1/R11: unused OTPs expire 21 days after issue (an index of the OTPs issued, by
        expiry; each is looked at once, when its time has come)."""
        now = self.clock.now()
        expiries = self._otp_expiries.current()
        due: list[OneTimePassword] = []
        for otp_id in expiries.due(now):
            otp = self._otp(otp_id)
            if otp.expire_if_due(now):
                due.append(otp)
        if due:
            self.save(*due)
        expiries.drop_due(now)  # seen to: recorded expired, or used or superseded before
        return len(due)

    # -- R2 -------------------------------------------------------------------
    @retried_on_conflict
    def login_with_otp(self, user_id: str, otp: str,
                       module: str | None = None) -> EnrollmentSession:
        """R2: user identifier + OTP open an enrollment session; 5 wrong attempts lock the OTP.

        With ``module`` named, only that module's OTP can open a session. A wrong OTP counts
        against every open OTP it could have opened: the named module's, or — with no module
        named, or one in which the user has no open OTP — all of the user's open OTPs. So no
        OTP is ever tried more than ``otp_max_attempts`` times, whatever module a guesser
        names (issue 26, item 2); guessing is also bounded per address."""
        now = self.clock.now()
        try:
            partner = self.partner(user_id)
        except NotFound:
            # the same work as for a known user with one OTP: a read and a hash, so the time
            # of the answer does not tell known from unknown user ids
            self._find(uuid5(NAMESPACE_URL, f"partner-ca:otp-decoy:{user_id}"))
            verify_otp(otp, _DECOY_OTP_HASH)
            raise OtpRefused(_WRONG_OTP, code="otp-wrong") from None
        history = [self._otp(i) for i in partner.otp_history]
        for candidate in reversed(history):
            if module is not None and candidate.module != module:
                continue
            # Only the OTP that matches says why it cannot be used (expired, used, locked);
            # any other answer would tell a guesser about the user's other OTPs.
            if verify_otp(otp, candidate.otp_hash) and candidate.redeem(
                    otp, now, self.rules.session_lifetime):
                self.save(candidate)
                return EnrollmentSession(candidate.id, user_id, candidate.module)
        open_otps = otps_a_guess_counts_against(history, module, now)
        for o in open_otps:
            o.record_failed_attempt(now, self.rules.otp_max_attempts)
        if open_otps:
            self.save(*open_otps)
        raise OtpRefused(_WRONG_OTP, code="otp-wrong")

    # -- R3 -------------------------------------------------------------------
    def check_request(self, csr_pem: str, revocation_password: str,
                      revocation_password_again: str) -> None:
        """R3's checks that need no session (CSR, key policy, the two password entries):
        a client runs them before it redeems the OTP, so a typo does not use it up."""
        check_revocation_passwords(revocation_password, revocation_password_again)
        checked_csr(csr_pem)

    def submit_request(self, session: EnrollmentSession, csr_pem: str,
                       revocation_password: str, revocation_password_again: str) -> UUID:
        """R3: a CSR and the revocation password typed twice, inside an enrollment session.

        One certificate per session: a request the portal refuses records nothing, and one
        the CA rejected may be followed by another in the same session (at most
        ``REQUESTS_PER_SESSION`` in all), so a bad key does not cost the user the OTP."""
        now = self.clock.now()
        otp = self._otp(session.otp_id)
        otp.check_session_open(now)
        for attempt in range(REQUESTS_PER_SESSION):
            request_id = CertificateRequest.id_for_session(session.otp_id, attempt)
            if request_id not in self.repository:
                break
            if self.request(request_id).state != "rejected":
                raise SessionUsed("this enrollment session has already been used for a request")
        else:
            raise SessionUsed(f"{REQUESTS_PER_SESSION} requests of this enrollment session were "
                              "rejected; ask the module administrator for a new OTP")
        return self._file_request(session.user_id, otp.module, csr_pem, revocation_password,
                                  revocation_password_again, otp_id=session.otp_id,
                                  attempt=attempt)

    def _file_request(self, user_id: str, module: str, csr_pem: str, password: str,
                      password_again: str, otp_id: UUID | None = None,
                      renews_serial: str | None = None, attempt: int = 0) -> UUID:
        self.check_request(csr_pem, password, password_again)  # nothing recorded if refused
        now = self.clock.now()
        partner = self.partner(user_id)
        request = CertificateRequest.submit(
            user_id=user_id, module=module, csr_pem=csr_pem,
            revocation_password_hash=hash_password(password), now=now, otp_id=otp_id,
            renews_serial=renews_serial, attempt=attempt,
        )
        partner.file_request(request_id=request.id, timestamp=now)
        try:
            self.save(request, partner)
        except IntegrityError:
            raise SessionUsed("this enrollment session has already been used for a request") from None
        return request.id

    def request(self, request_id: UUID) -> CertificateRequest:
        try:
            return cast(CertificateRequest, self.repository.get(request_id))
        except AggregateNotFoundError:
            raise NotFound(f"no request {request_id}", code="request-unknown") from None

    def owned_request(self, request_id: UUID, user_id: str) -> CertificateRequest:
        """A request as its own user sees it: another user's answers exactly as an unknown
        one (no answer tells which request ids exist). The one ownership check."""
        request = self.request(request_id)
        if request.user_id != user_id:
            raise NotFound(f"no request {request_id}", code="request-unknown")
        return request

    # -- R4 -------------------------------------------------------------------
    def pickup_token(self, request_id: UUID) -> str:
        """The single-use pickup link's token (recomputed, never stored)."""
        return keyed_token(self.secret, "pickup", str(request_id))

    @retried_on_conflict
    def pickup(self, request_id: UUID, user_id: str) -> PickedUpCertificate:
        """R4: pickup by a logged-in user (enrollment or certificate session)."""
        return self._pick_up(self.owned_request(request_id, user_id), via="session")

    @retried_on_conflict
    def pickup_with_link(self, request_id: UUID, token: str) -> PickedUpCertificate:
        """R4: pickup by the emailed single-use link."""
        if not same_token(token, self.pickup_token(request_id)):
            raise PickupLinkInvalid("the pickup link is not valid")
        return self._pick_up(self.request(request_id), via="link")

    def _pick_up(self, request: CertificateRequest, via: str) -> PickedUpCertificate:
        request.check_pickup_allowed()
        now = self.clock.now()
        assert request.serial and request.certificate_pem
        old = (self.certificate_request(request.user_id, request.renews_serial)
               if request.renews_serial else None)
        if old is not None:
            check_renewal_pickup_allowed(old)
        request.picked_up(serial=request.serial, via=via, timestamp=now)
        changed: list[Any] = [request]
        if old is not None and old.certificate_status == CertificateStatus.GOOD:
            # R7: once the renewed certificate is picked up, the old one is superseded.
            old.submit_revocation(self.rules.renewal_supersede_reason, "portal:renewal", now)
            changed.append(old)
        self.save(*changed)
        return PickedUpCertificate(request.id, request.serial, request.certificate_pem,
                                   self._trust().chain_for(request.certificate_pem))

    def chain(self) -> TrustChain:
        """The CA chain handed out with certificates (R12)."""
        return self._trust()

    def _trust(self) -> TrustChain:
        if self.trust is None:
            raise NotReady("the portal has no CA chain configured", code="no-trust-anchor")
        return self.trust()

    def certificate_request(self, user_id: str, serial: str,
                            batch: Batch | None = None) -> CertificateRequest | None:
        partner = self._find(PartnerAccount.id_for(user_id), batch)
        if partner is None:
            return None
        for request_id in reversed(partner.requests):
            request = self._get(request_id, batch)
            if request.serial == serial:
                return cast(CertificateRequest, request)
        return None

    def _pending_renewals_of(self, request: CertificateRequest,
                             batch: Batch) -> list[CertificateRequest]:
        """Renewals of ``request``'s certificate that are signed but not picked up."""
        partner = self._find(PartnerAccount.id_for(request.user_id), batch)
        found = []
        for request_id in partner.requests if partner is not None else ():
            renewal = self._get(request_id, batch)
            if (renewal.renews_serial == request.serial and renewal.state == "ready"
                    and renewal.certificate_status == CertificateStatus.GOOD
                    and not renewal.revocation_pending):
                found.append(cast(CertificateRequest, renewal))
        return found

    # -- R7 -------------------------------------------------------------------
    def request_renewal(self, session: CertificateSession, csr_pem: str,
                        revocation_password: str, revocation_password_again: str) -> UUID:
        """R7: renewal while the current certificate is valid, with a new key."""
        current = self.request(session.request_id)
        now = self.clock.now()
        current.check_renewal_allowed(now)
        self._check_renewal_limits(session, now)
        return self._file_request(session.user_id, session.module, csr_pem, revocation_password,
                                  revocation_password_again, renews_serial=session.serial)

    def _check_renewal_limits(self, session: CertificateSession, now: datetime) -> None:
        """R7: one renewal pending per certificate (a second is refused: the first may already
        be signed, and two new keys for one certificate help only a thief); at most
        ``renewals_per_day`` renewal requests per user in 24 hours."""
        mine = [self.request(i) for i in self.partner(session.user_id).requests]
        if any(r.renews_serial == session.serial and r.state in ("submitted", "ready")
               for r in mine):
            raise RequestRefused(f"a renewal of {session.serial} is already pending; pick it "
                                 "up (or wait for its answer) first", code="renewal-pending")
        today = [r for r in mine if r.kind == "renewal" and now - r.created_on < timedelta(
            days=1) and r.state != "rejected"]
        if len(today) >= self.rules.renewals_per_day:
            raise TooManyAttempts(f"at most {self.rules.renewals_per_day} renewals a day",
                                  code="renewal-limit")

    # -- R9 -------------------------------------------------------------------
    @retried_on_conflict
    def revoke(self, session: CertificateSession, revocation_password: str,
               reason: str = "unspecified") -> None:
        """R9: the logged-in user revokes with the revocation password; the CA is asked."""
        check_partner_revocation_reason(reason)
        request = self.request(session.request_id)
        now = self.clock.now()
        if not request.check_revocation_password(revocation_password, now,
                                                 self.rules.revocation_max_attempts):
            self.save(request)  # the failed attempt (and a lock) are facts: recorded
            raise CertificateRefused("the revocation password is wrong",
                                     code="revocation-password-wrong")
        request.check_certificate_valid(now, action="revoke")
        request.submit_revocation(reason, f"user:{session.user_id}", now)
        self.save(request)

    @retried_on_conflict
    def unlock_revocation(self, serial: str, operator: str) -> bool:
        """Ops lift a revocation-password lock (R9); False if there was nothing to lift."""
        if not operator.strip():
            raise DomainError("the acting operator must be named", code="operator-required")
        request = self.request_for_serial(serial)
        changed = request.unlock_revocation(f"operator:{operator}", self.clock.now())
        if changed:
            self.save(request)
        return changed

    # -- messages from the CA --------------------------------------------------
    @singledispatchmethod
    def policy(self, domain_event: Any, batch: Batch) -> None:
        """Messages of other types are not for the portal."""

    def prefetch_ids(self, message: m.Message) -> Iterable[UUID]:
        """Every CA message concerns one certificate request (its id is the request id)."""
        request_id = getattr(message, "request_id", None)
        return (request_id,) if isinstance(request_id, UUID) else ()

    @policy.register
    def _(self, msg: m.CertificateIssued, batch: Batch) -> None:
        request = self._find(msg.request_id, batch)
        if request is None or request.state != "submitted":
            return
        self._check_issued(msg, request)
        request.certificate_ready(serial=msg.serial, not_before=msg.not_before,
                                  not_after=msg.not_after, certificate_pem=msg.certificate_pem,
                                  timestamp=self.clock.now())
        renewed = (self.certificate_request(request.user_id, request.renews_serial, batch)
                   if request.renews_serial else None)
        if renewed is not None and not renewed_still_valid(renewed):
            # R7 with R9/R10: the certificate it renews was revoked (or is being revoked)
            # while the CA signed; the renewal may be a thief's key (issue 26, item 1)
            request.submit_revocation(renewed.revocation_reason or "cessationOfOperation",
                                      "portal:renewal-of-revoked", self.clock.now())
        batch.collect_events(request)

    @policy.register
    def _(self, msg: m.CsrRejected, batch: Batch) -> None:
        request = self._find(msg.request_id, batch)
        if request is None or request.state != "submitted":
            return
        request.reject(code=msg.code, reason=msg.reason, timestamp=self.clock.now())
        batch.collect_events(request)

    @policy.register
    def _(self, msg: m.CertificateRevoked, batch: Batch) -> None:
        request = self._find(msg.request_id, batch)
        if request is None or request.serial != msg.serial:
            raise MessageRefused(f"revocation of {msg.serial} for request {msg.request_id}, "
                                 "which has no such certificate")
        if request.certificate_status == CertificateStatus.REVOKED:
            return
        if not request.revocation_pending and not msg.revoked_by.startswith("operator:"):
            raise MessageRefused(f"revocation of {msg.serial} by {msg.revoked_by!r}, which "
                                 "the portal did not ask for and no operator made")
        request.revocation_confirmed(serial=msg.serial, reason=msg.reason,
                                     revoked_at=msg.revoked_at, timestamp=self.clock.now())
        batch.collect_events(request)
        for renewal in self._pending_renewals_of(request, batch):
            # R7 with R9/R10: a renewal signed but not picked up dies with the certificate it
            # renews; a session opened before the revocation must not collect it (item 1)
            renewal.submit_revocation(msg.reason, "portal:renewal-of-revoked", self.clock.now())
            batch.collect_events(renewal)

    @policy.register
    def _(self, msg: m.CertificateExpired, batch: Batch) -> None:
        request = self._find(msg.request_id, batch)
        if request is None or request.certificate_status != CertificateStatus.GOOD:
            return
        request.expiry_noted(serial=msg.serial, not_after=msg.not_after,
                             timestamp=self.clock.now())
        batch.collect_events(request)


    def issued_by_our_ca(self, cert: x509.Certificate) -> bool:
        """Against the issuing CA last read; on a mismatch the chain is read again once (a
        new issuing CA after a rollover), so a stale copy never refuses a good certificate."""
        for fresh in (False, True):
            if fresh or self._trusted is None:
                self._trusted = self._trust()
            if self._trusted.issuer_of(cert) is not None:
                return True
        return False

    def _check_issued(self, msg: m.CertificateIssued, request: CertificateRequest) -> None:
        """Even a message the CA signed must be the certificate this request asked for: our
        issuing CA's signature on it, the CSR's key, this user and module, the serial and
        validity the message says."""
        try:
            cert = x509.load_pem_x509_certificate(msg.certificate_pem.encode())
        except ValueError:
            raise MessageRefused(f"certificate of {msg.request_id} is not PEM") from None
        if not self.issued_by_our_ca(cert):
            raise MessageRefused(f"certificate {msg.serial} for request {msg.request_id} is "
                                 "not signed by our issuing CA")
        if spki_fingerprint(cert.public_key()) != csr_fingerprint(request.csr_pem):
            raise MessageRefused(f"certificate {msg.serial} for request {msg.request_id} "
                                 "carries another key than the request's CSR")
        said = (serial_hex(cert.serial_number), *subject_identity(cert),
                cert.not_valid_before_utc, cert.not_valid_after_utc)
        if said != (msg.serial, request.user_id, request.module, msg.not_before,
                    msg.not_after) or (msg.user_id, msg.module) != (request.user_id,
                                                                    request.module):
            raise MessageRefused(f"certificate {msg.serial} for request {msg.request_id} does "
                                 "not match the message or the request (serial, user, module "
                                 "or validity)")
