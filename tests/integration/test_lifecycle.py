"""The Portal and the CA together, on SQLite and on PostgreSQL (rules R1–R4, R7–R11)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Tracking

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import PartnerCa
from ca_core.certificate import Certificate
from ca_core.errors import DomainError
from ca_core.eventmodel import all_events
from ca_core.messages import CertificateRequested, RevocationRequested
from ca_core.otp import OneTimePassword, OtpRefused
from ca_core.partner import ModuleRefused
from ca_core.x509profile import from_pem
from tests.support import (
    MODULE,
    PASSWORD,
    USER,
    advance,
    cert_login,
    enroll,
    make_system,
    register,
)


def count(app: Any) -> int:
    return len(all_events(app))


def refused(code: str) -> _Refused:
    """Expect a DomainError with this code."""
    return _Refused(code)


class _Refused:
    def __init__(self, code: str) -> None:
        self.code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        assert exc is not None, f"expected a refusal with code {self.code}"
        assert isinstance(exc, DomainError), exc
        assert exc.code == self.code, (exc.code, str(exc))
        return True


def test_r1_otp_through_a_module_the_user_is_not_in_is_refused_and_nothing_is_stored(
        system: PartnerCa) -> None:
    register(system)
    before = count(system.portal)
    with pytest.raises(ModuleRefused):
        system.portal.issue_otp(USER, "REV", issued_by="admin-rev")
    assert count(system.portal) == before


def test_r1_new_otp_supersedes_the_unused_old_one(system: PartnerCa) -> None:
    register(system)
    _, first = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    _, second = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    with refused("otp-superseded"):
        system.portal.login_with_otp(USER, first)
    system.portal.login_with_otp(USER, second)


def test_r1_unused_otp_expires_after_21_days(system: PartnerCa) -> None:
    register(system)
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    advance(system, timedelta(days=21))
    assert system.portal.expire_otps() == 1
    with refused("otp-expired"):
        system.portal.login_with_otp(USER, otp)


def test_r2_wrong_used_and_locked_otps_are_refused(system: PartnerCa) -> None:
    register(system)
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    for _ in range(5):
        with refused("otp-wrong"):
            system.portal.login_with_otp(USER, "AAAA-BBBB-CCCC-DDDD")
    with refused("otp-locked"):
        system.portal.login_with_otp(USER, otp)
    _, otp2 = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    system.portal.login_with_otp(USER, otp2)
    with refused("otp-used"):
        system.portal.login_with_otp(USER, otp2)
    with refused("otp-wrong"):  # an unknown user looks exactly like a wrong OTP
        system.portal.login_with_otp("nobody", otp2)


def test_r3_mismatched_passwords_and_bad_csr_leave_no_state(system: PartnerCa) -> None:
    register(system)
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    session = system.portal.login_with_otp(USER, otp)
    csr = softtoken.make_csr(softtoken.new_key(), USER)
    before = (count(system.portal), count(system.ca))
    with refused("revocation-password-mismatch"):
        system.portal.submit_request(session, csr, "password one", "password two")
    with refused("csr-malformed"):
        system.portal.submit_request(session, "not a csr", PASSWORD, PASSWORD)
    with refused("key-size-not-allowed"):
        system.portal.submit_request(
            session, softtoken.make_csr(softtoken.new_key("rsa1024"), USER), PASSWORD, PASSWORD)
    system.pump()
    assert (count(system.portal), count(system.ca)) == before
    # the session is still usable for a good request, once
    system.portal.submit_request(session, csr, PASSWORD, PASSWORD)
    with refused("session-used"):
        system.portal.submit_request(session, csr, PASSWORD, PASSWORD)


def test_r3_key_certified_to_another_user_is_rejected_by_the_ca(system: PartnerCa) -> None:
    register(system)
    register(system, "P24-000999")
    shared = softtoken.new_key()
    enroll(system, key=shared)
    _, otp = system.portal.issue_otp("P24-000999", MODULE, issued_by="admin")
    session = system.portal.login_with_otp("P24-000999", otp)
    request_id = system.portal.submit_request(
        session, softtoken.make_csr(shared, "P24-000999"), PASSWORD, PASSWORD)
    system.pump()
    request = system.portal.request(request_id)
    assert request.state == "rejected" and "another user" in (request.rejection or "")
    with refused("request-rejected"):
        system.portal.pickup(request_id, "P24-000999")


def test_r4_issuance_pickup_chain_and_single_use_link(system: PartnerCa) -> None:
    register(system)
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    session = system.portal.login_with_otp(USER, otp)
    key = softtoken.new_key()
    request_id = system.portal.submit_request(session, softtoken.make_csr(key, USER),
                                              PASSWORD, PASSWORD)
    with refused("certificate-not-ready"):
        system.portal.pickup(request_id, USER)
    system.pump()
    with refused("pickup-link-invalid"):
        system.portal.pickup_with_link(request_id, "guessed-token")
    picked = system.portal.pickup_with_link(request_id, system.portal.pickup_token(request_id))
    authority = system.ca.authority()
    assert picked.chain_pem == authority.issuing_certificate_pem + authority.root_certificate_pem
    leaf = from_pem(picked.certificate_pem)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=365,
                                                                              seconds=-1)
    with refused("pickup-used"):
        system.portal.pickup_with_link(request_id, system.portal.pickup_token(request_id))


def test_r5_certificate_login_and_its_refusals(system: PartnerCa, tmp_path: Any) -> None:
    register(system)
    me = enroll(system)
    session = cert_login(system, me.picked.certificate_pem, me.key)
    assert (session.user_id, session.module, session.serial) == (USER, MODULE, me.picked.serial)
    # wrong key
    with refused("challenge-signature-invalid"):
        cert_login(system, me.picked.certificate_pem, softtoken.new_key())
    # forged challenge
    with refused("challenge-invalid"):
        system.portal.certificate_login.with_signature(me.picked.certificate_pem, "1.2.3", b"x")
    # foreign certificate (another CA)
    other = make_system(tmp_path / "other")
    register(other)
    foreign = enroll(other)
    other.close()
    with refused("certificate-foreign"):
        cert_login(system, foreign.picked.certificate_pem, foreign.key)
    # expired
    advance(system, timedelta(days=366))
    with refused("certificate-expired"):
        cert_login(system, me.picked.certificate_pem, me.key)


def test_r7_renewal_supersedes_the_old_certificate(system: PartnerCa) -> None:
    register(system)
    me = enroll(system)
    advance(system, timedelta(days=330))
    session = cert_login(system, me.picked.certificate_pem, me.key)
    new_key = softtoken.new_key()
    renewal_id = system.portal.request_renewal(session, softtoken.make_csr(new_key, USER),
                                               "new password 22", "new password 22")
    system.pump()
    renewed = system.portal.pickup(renewal_id, USER)
    system.pump()
    old = system.ca.status(me.picked.serial)
    assert (old.status, old.reason) == ("revoked", "superseded")
    assert system.ca.status(renewed.serial).status == "good"
    with refused("certificate-revoked"):
        cert_login(system, me.picked.certificate_pem, me.key)
    cert_login(system, renewed.certificate_pem, new_key)


def test_r7_renewal_of_revoked_or_expired_certificate_is_refused(system: PartnerCa) -> None:
    register(system)
    me = enroll(system)
    session = cert_login(system, me.picked.certificate_pem, me.key)
    system.ca.revoke(me.picked.serial, "affiliationChanged", operator="ops-anna")
    system.pump()
    with refused("renewal-not-allowed"):
        system.portal.request_renewal(session, softtoken.make_csr(softtoken.new_key(), USER),
                                      PASSWORD, PASSWORD)
    other = enroll(system)
    session = cert_login(system, other.picked.certificate_pem, other.key)
    advance(system, timedelta(days=366))
    with refused("renewal-not-allowed"):
        system.portal.request_renewal(session, softtoken.make_csr(softtoken.new_key(), USER),
                                      PASSWORD, PASSWORD)


def test_r8_a_new_otp_starts_over_after_expiry(system: PartnerCa) -> None:
    register(system)
    me = enroll(system)
    advance(system, timedelta(days=370))
    assert system.ca.expire_due() == [me.picked.serial]
    again = enroll(system)
    assert system.ca.status(again.picked.serial).status == "good"


def test_r9_user_revokes_with_the_revocation_password(system: PartnerCa) -> None:
    register(system)
    me = enroll(system)
    session = cert_login(system, me.picked.certificate_pem, me.key)
    with refused("revocation-password-wrong"):
        system.portal.revoke(session, "not the password")
    system.portal.revoke(session, PASSWORD, reason="keyCompromise")
    system.pump()
    status = system.ca.status(me.picked.serial)
    assert (status.status, status.reason, status.changed_by) == (
        "revoked", "keyCompromise", f"user:{USER}")
    assert system.portal.request(me.request_id).certificate_status == "revoked"
    with refused("certificate-revoked"):
        cert_login(system, me.picked.certificate_pem, me.key)
    # R3: a key revoked for key compromise is never certified again
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    s2 = system.portal.login_with_otp(USER, otp)
    rid = system.portal.submit_request(s2, softtoken.make_csr(me.key, USER), PASSWORD, PASSWORD)
    system.pump()
    assert system.portal.request(rid).state == "rejected"


def test_r10_ops_revocation_records_reason_and_operator(system: PartnerCa) -> None:
    register(system)
    me = enroll(system)
    with refused("revocation-reason-invalid"):
        system.ca.revoke(me.picked.serial, "certificateHold", operator="ops-anna")
    with refused("operator-required"):
        system.ca.revoke(me.picked.serial, "keyCompromise", operator=" ")
    with refused("certificate-unknown"):
        system.ca.revoke("00FF", "keyCompromise", operator="ops-anna")
    assert system.ca.revoke(me.picked.serial, "privilegeWithdrawn", operator="ops-anna")
    assert not system.ca.revoke(me.picked.serial, "privilegeWithdrawn", operator="ops-anna")
    status = system.ca.status(me.picked.serial)
    assert (status.reason, status.changed_by) == ("privilegeWithdrawn", "operator:ops-anna")


def test_r11_expiry_is_recorded_once_not_after_passes(system: PartnerCa) -> None:
    register(system)
    me = enroll(system)
    advance(system, timedelta(days=364))
    assert system.ca.expire_due() == []
    advance(system, timedelta(days=2))
    assert system.ca.status_of(me.picked.serial) == "expired"
    assert system.ca.expire_due() == [me.picked.serial]
    assert system.ca.expire_due() == []
    system.pump()
    assert system.portal.request(me.request_id).certificate_status == "expired"


def test_redelivered_messages_change_nothing(system: PartnerCa) -> None:
    """A request or revocation delivered twice yields one certificate and one revocation."""
    register(system)
    me = enroll(system)
    request = system.portal.request(me.request_id)
    msg = CertificateRequested(message_id="x", occurred_at=request.created_on,
                               request_id=me.request_id, user_id=USER, module=MODULE,
                               csr_pem=softtoken.make_csr(me.key, USER), renews_serial=None)
    before = count(system.ca)
    system.ca.process_event(msg, Tracking("replayer", 1))  # type: ignore[arg-type]
    revoke = RevocationRequested(message_id="y", occurred_at=request.created_on,
                                 serial=me.picked.serial, reason="unspecified",
                                 requested_by="user:x")
    system.ca.process_event(revoke, Tracking("replayer", 2))  # type: ignore[arg-type]
    system.ca.process_event(revoke, Tracking("replayer", 3))  # type: ignore[arg-type]
    assert count(system.ca) == before + 2  # RevocationRequested + CertificateRevoked, once
    issued = [e for _, e in all_events(system.ca) if isinstance(e, Certificate.CertificateIssued)]
    assert len(issued) == 1


def test_replaying_the_whole_log_gives_the_same_state(system: PartnerCa) -> None:
    """Aggregates folded from the raw log, and reloaded by a fresh process, equal the live ones."""
    register(system)
    me = enroll(system)
    session = cert_login(system, me.picked.certificate_pem, me.key)
    system.portal.revoke(session, PASSWORD, reason="keyCompromise")
    system.pump()
    enroll(system)
    live: dict[Any, dict[str, Any]] = {}
    for app in (system.portal, system.ca):
        folded: dict[Any, Any] = {}
        for _, event in all_events(app):
            folded[event.originator_id] = event.mutate(folded.get(event.originator_id))
        for aggregate_id, aggregate in folded.items():
            state = vars(app.repository.get(aggregate_id))
            assert vars(aggregate) == state
            live[aggregate_id] = state
    settings = system.settings
    system.close()
    reopened = make_system(settings.data_dir, settings.database_url, initialise=False)
    try:
        for app in (reopened.portal, reopened.ca):
            for aggregate_id in {e.originator_id for _, e in all_events(app)}:
                assert vars(app.repository.get(aggregate_id)) == live[aggregate_id]
    finally:
        reopened.close()


def test_r2_wrong_attempts_lock_the_open_otp_even_with_used_ones_in_history(
        tmp_path: Path) -> None:
    """Regression: an older, used OTP made every wrong attempt answer 'otp-used' before the
    attempt was counted — no lockout, and a hint that the user exists."""
    system = make_system(tmp_path / "data")
    register(system)
    enroll(system)  # redeems a first OTP
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin-epak")
    codes = []
    for _ in range(system.portal.rules.otp_max_attempts):
        with pytest.raises(OtpRefused) as refused:
            system.portal.login_with_otp(USER, "WRONG-WRONG-WRONG-WRONG")
        codes.append(refused.value.code)
    assert set(codes) == {"otp-wrong"}
    assert any(isinstance(e, OneTimePassword.OtpLocked) for _, e in all_events(system.portal))
    with pytest.raises(OtpRefused) as refused:
        system.portal.login_with_otp(USER, otp)
    assert refused.value.code == "otp-locked"
    system.close()


@pytest.mark.parametrize("revoked_by", ["user", "operator", "ca-operator"])
@pytest.mark.parametrize("signed_before_revocation", [True, False])
def test_r7_a_renewal_dies_with_the_certificate_it_renews(
        system: PartnerCa, revoked_by: str, signed_before_revocation: bool) -> None:
    """Issue 26 item 1: a thief holding the partner's certificate session starts a renewal
    with his own key; the certificate is revoked (keyCompromise); the thief's session,
    opened before, must not collect the renewal, and its certificate must not stay good."""
    register(system)
    me = enroll(system)
    thief = cert_login(system, me.picked.certificate_pem, me.key)
    thief_key = softtoken.new_key()
    renewal_id = system.portal.request_renewal(thief, softtoken.make_csr(thief_key, USER),
                                               "thief password 1", "thief password 1")
    if signed_before_revocation:
        system.pump()
        assert system.portal.request(renewal_id).state == "ready"
    if revoked_by == "user":
        system.portal.revoke(cert_login(system, me.picked.certificate_pem, me.key), PASSWORD,
                             reason="keyCompromise")
    elif revoked_by == "operator":
        system.portal.revoke_as_operator(me.picked.serial, "keyCompromise", "ops-anna")
    else:
        system.pump()
        system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops-anna")
    if revoked_by != "ca-operator":  # the portal knows at once (it asked the CA itself)
        with refused("renewal-void" if signed_before_revocation else "certificate-not-ready"):
            system.portal.pickup(renewal_id, USER)
    system.pump()
    system.pump()
    renewal = system.portal.request(renewal_id)
    if renewal.state == "rejected":  # the CA saw the revocation first (another Kafka key)
        assert not signed_before_revocation
        return  # R7 on the CA side: a revoked certificate is not renewed; nothing was signed
    assert renewal.state == "ready" and renewal.serial
    with refused("renewal-void"):
        system.portal.pickup(renewal_id, USER)
    with refused("renewal-void"):
        system.portal.pickup_with_link(renewal_id, system.portal.pickup_token(renewal_id))
    assert system.ca.status(renewal.serial).status == "revoked"
    assert system.ca.status(me.picked.serial).reason == "keyCompromise"


def test_r2_no_module_named_counts_against_every_open_otp(system: PartnerCa) -> None:
    """Issue 26 item 2: a guess that names no module (or one without an open OTP) could
    have opened any of the user's open OTPs, so it counts against each of them."""
    register(system, modules=(MODULE, "REV"))
    _, epak = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    _, rev = system.portal.issue_otp(USER, "REV", issued_by="admin")
    for module in (None, "SBOX", None, "PIS", None):
        with refused("otp-wrong"):
            system.portal.login_with_otp(USER, "AAAA-BBBB-CCCC-DDDD", module)
    for otp in (epak, rev):
        with refused("otp-locked"):
            system.portal.login_with_otp(USER, otp)
    _, rev = system.portal.issue_otp(USER, "REV", issued_by="admin")
    with refused("otp-wrong"):  # an OTP opens only the module it was issued for
        system.portal.login_with_otp(USER, rev, MODULE)
    assert system.portal.login_with_otp(USER, rev, "REV").module == "REV"
