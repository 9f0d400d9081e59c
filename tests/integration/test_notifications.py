"""Email notifications through a real SMTP server (aiosmtpd): pickup link, revocation, expiry,
OTP lockout; exactly once across a restart of the sender; retries when the server is away."""

from __future__ import annotations

import email
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.entrypoints.bootstrap import PartnerCa
from adapters.entrypoints.mail_wiring import notifier_for as wired
from adapters.entrypoints.mail_wiring import transport_for
from adapters.portal.app import portal_api
from adapters.portal.mailer import MaildirTransport, Notifier
from adapters.settings import Settings
from ca_core.otp import OtpRefused
from tests.support import (
    MODULE,
    USER,
    advance,
    enroll,
    make_system,
    port_of,
    refused_port,
    register,
    smtp_server,
)


class Inbox:
    """aiosmtpd handler that keeps every message; optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[Message] = []
        self.delay = delay
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            time.sleep(self.delay)
        with self.arrived:
            self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
            self.arrived.notify_all()
        return "250 OK"

    def ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.messages]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller, port = smtp_server(inbox)
    yield inbox, port
    controller.stop()


def notifier_for(system: PartnerCa, port: int, **extra: Any) -> Notifier:
    settings = Settings(data_dir=system.settings.data_dir,
                        database_url=system.settings.database_url, smtp_host="127.0.0.1",
                        smtp_port=port, **extra)
    return wired(system.portal, settings, transport_for(settings))


def text_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text part")


def test_the_manual_s_emails_arrive_and_the_pickup_link_works(
        tmp_path: Path, database_url: str, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    system = make_system(tmp_path / "data", database_url)
    register(system)
    system.portal.register_partner("P24-000777", "en@example.com", [MODULE], language="en")
    notifier = notifier_for(system, port)
    # R4: the pickup link, in Czech for the default user; following it gives the certificate
    request_id = _request_only(system, USER)
    notifier.step()
    [ready] = inbox.messages
    assert ready["To"] == "p24-000123@example.com" and "certifikát" in str(ready["Subject"])
    assert ready.is_multipart() and {p.get_content_type() for p in ready.walk()} >= {
        "text/plain", "text/html"}
    link = re.search(r"/pickup/([0-9a-f-]+)\?token=(\S+)", text_of(ready))
    assert link is not None
    with TestClient(portal_api(system.portal)) as client:
        picked = client.post(f"/v1/pickup/{link.group(1)}", json={"token": link.group(2)})
    assert picked.status_code == 200, picked.text
    assert picked.json()["request_id"] == str(request_id)
    # R9 revocation notice, in English for an English-speaking user
    other = enroll(system, "P24-000777")
    system.ca.revoke(other.picked.serial, "keyCompromise", operator="ops")
    system.pump()
    notifier.step()
    subjects = [str(m["Subject"]) for m in inbox.messages]
    assert "Your certificate has been revoked" in subjects
    # R11: reminder 30 days ahead, then the expiry notice
    advance(system, timedelta(days=366 - 29))
    notifier.step()
    assert sum("brzy vyprší" in s for s in (str(m["Subject"]) for m in inbox.messages)) == 1
    notifier.step()
    assert sum("brzy vyprší" in str(m["Subject"]) for m in inbox.messages) == 1, "once only"
    advance(system, timedelta(days=30))
    system.ca.expire_due()
    system.pump()
    notifier.step()
    assert any("Platnost vašeho certifikátu skončila" in str(m["Subject"])
               for m in inbox.messages)
    # OTP lockout
    system.portal.issue_otp(USER, MODULE, issued_by="admin")
    for _ in range(system.portal.rules.otp_max_attempts):
        with pytest.raises(OtpRefused):
            system.portal.login_with_otp(USER, "WRONGWRONGWRONG")
    notifier.step()
    assert any("zablokováno" in str(m["Subject"]) for m in inbox.messages)
    assert len(inbox.ids()) == len(set(inbox.ids())), "no mail twice"
    assert all(not re.search(r"token=\w", str(m)) for m in notifier.outbox.all()), \
        "no link token at rest"
    system.close()


def _request_only(system: PartnerCa, user: str) -> Any:
    from adapters.client import softtoken
    from tests.support import PASSWORD

    _, otp = system.portal.issue_otp(user, MODULE, issued_by="admin")
    session = system.portal.login_with_otp(user, otp)
    request_id = system.portal.submit_request(
        session, softtoken.make_csr(softtoken.new_key(), user), PASSWORD, PASSWORD)
    system.pump()
    return request_id


def test_a_restart_in_the_middle_of_a_batch_sends_nothing_twice_and_loses_nothing(
        tmp_path: Path, database_url: str) -> None:
    inbox = Inbox(delay=0.05)
    controller, port = smtp_server(inbox)
    system = make_system(tmp_path / "data", database_url)
    register(system)
    for _ in range(24):
        _request_only(system, USER)
    first = notifier_for(system, port)
    first.collect()
    assert len(first.outbox.due(system.clock.now(), 1000)) == 24

    def stop_after_eight() -> None:
        with inbox.arrived:
            inbox.arrived.wait_for(lambda: len(inbox.messages) >= 8, timeout=30)
        first.stopping.set()  # SIGTERM in serve sets this very event

    stopper = threading.Thread(target=stop_after_eight)
    stopper.start()
    first.send_due()
    stopper.join()
    first.transport.close()
    assert 8 <= len(inbox.messages) < 24, "stopped in the middle"
    second = notifier_for(system, port)  # the restarted sender
    second.step()
    controller.stop()
    assert len(inbox.messages) == 24
    assert len(set(inbox.ids())) == 24, "no mail twice, none lost"
    system.close()


def test_delivery_is_retried_with_back_off_when_the_server_is_away(
        tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    system = make_system(tmp_path / "data")
    register(system)
    _request_only(system, USER)
    with refused_port() as nobody:  # nothing listens there
        away = notifier_for(system, port_of(nobody))
        away.step()
    [mail] = away.outbox.all()
    assert (mail.state, mail.attempts) == ("pending", 1) and mail.last_error
    assert away.outbox.due(system.clock.now(), 10) == [], "not before the back-off"
    advance(system, timedelta(seconds=11))
    notifier_for(system, port).step()
    assert len(inbox.messages) == 1
    system.close()


def test_the_embedded_default_writes_a_maildir(tmp_path: Path) -> None:
    system = make_system(tmp_path / "data")
    register(system)
    _request_only(system, USER)
    transport = MaildirTransport(tmp_path / "mail")
    wired(system.portal, system.settings, transport).step()
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 1
    system.close()
