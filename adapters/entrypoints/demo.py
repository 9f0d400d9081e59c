"""The manual's story, start to finish, on the embedded default (SQLite, in-process transport)."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import PartnerCa, build
from adapters.settings import Settings
from ca_core.clock import ManualClock

USER = "P24-000123"
MODULE = "EPAK"


@dataclass
class DemoSecrets:
    """Secrets the demo handed out; a test checks none of them reached the event stores."""

    otps: list[str]
    revocation_passwords: list[str]
    private_keys_pem: list[str]
    key_passphrase: str


@contextmanager
def demo_system(
    data_dir: Path | None = None, database_url: str = ""
) -> Iterator[tuple[PartnerCa, str]]:
    with tempfile.TemporaryDirectory(prefix="partner-ca-demo-") as tmp:
        passphrase = secrets.token_urlsafe(24)  # lives only in memory for this run
        settings = Settings(data_dir=data_dir or Path(tmp), database_url=database_url)
        system = build(settings, clock=ManualClock(step=timedelta(milliseconds=1)),
                       passphrase=passphrase)
        try:
            yield system, passphrase
        finally:
            system.close()


def run_story(system: PartnerCa, passphrase: str) -> DemoSecrets:
    """Chapters 2–9 of the manual plus R8 and R11, driven through the applications."""
    portal, ca = system.portal, system.ca
    clock = system.clock
    assert isinstance(clock, ManualClock)
    keys: list[softtoken.UserKey] = []
    otps: list[str] = []
    passwords: list[str] = []

    ca.hierarchy.initialise()
    portal.register_partner(USER, email="partner@example.com", modules=[MODULE], language="cs")

    # Chapter 2 (R1): the EPAK administrator issues an OTP.
    _, otp = portal.issue_otp(USER, MODULE, issued_by="admin-epak")
    otps.append(otp)
    clock.advance(timedelta(hours=2))

    # Chapter 4 (R2, R3): OTP login, CSR from the token, revocation password twice.
    session = portal.login_with_otp(USER, otp)
    keys.append(softtoken.new_key())
    password = "correct horse battery"  # noqa: S105 - a demo user typing it
    passwords.append(password)
    request_id = portal.submit_request(session, softtoken.make_csr(keys[0], USER),
                                       password, password)
    system.pump()  # R4: the CA signs asynchronously
    clock.advance(timedelta(minutes=1))
    first = portal.pickup(request_id, USER)

    # Chapter 6 (R5): login with the certificate.
    challenge = portal.certificate_login.new_challenge()
    cert_session = portal.certificate_login.with_signature(
        first.certificate_pem, challenge, softtoken.sign_challenge(keys[0], challenge))

    # Chapter 8 (R7): renewal while valid, with a new key; the old one becomes superseded.
    clock.advance(timedelta(days=340))
    challenge = portal.certificate_login.new_challenge()
    cert_session = portal.certificate_login.with_signature(
        first.certificate_pem, challenge, softtoken.sign_challenge(keys[0], challenge))
    keys.append(softtoken.new_key())
    renewal_password = "renewal password 2"  # noqa: S105 - a demo user typing it
    passwords.append(renewal_password)
    renewal_id = portal.request_renewal(cert_session, softtoken.make_csr(keys[1], USER),
                                        renewal_password, renewal_password)
    system.pump()
    clock.advance(timedelta(minutes=1))
    renewed = portal.pickup(renewal_id, USER)
    system.pump()  # the superseding revocation travels to the CA and back

    # Chapter 9 (R9): the user revokes the new certificate with the revocation password.
    clock.advance(timedelta(days=30))
    challenge = portal.certificate_login.new_challenge()
    new_session = portal.certificate_login.with_signature(
        renewed.certificate_pem, challenge, softtoken.sign_challenge(keys[1], challenge))
    portal.revoke(new_session, renewal_password, reason="keyCompromise")
    system.pump()

    # R8: a new OTP starts over; R11: that certificate then expires, and so does an unused OTP.
    clock.advance(timedelta(days=1))
    _, otp2 = portal.issue_otp(USER, MODULE, issued_by="admin-epak")
    otps.append(otp2)
    session = portal.login_with_otp(USER, otp2)
    keys.append(softtoken.new_key())
    password3 = "third password 3"
    passwords.append(password3)
    third_id = portal.submit_request(session, softtoken.make_csr(keys[2], USER),
                                     password3, password3)
    system.pump()
    portal.pickup(third_id, USER)
    _, unused = portal.issue_otp(USER, MODULE, issued_by="admin-epak")
    otps.append(unused)
    clock.advance(timedelta(days=366))
    ca.expire_due()
    portal.expire_otps()
    system.pump()
    return DemoSecrets(otps, passwords, [softtoken.key_pem(k) for k in keys], passphrase)
