"""The notifier (``serve --role notifier``): renders outbox mails and delivers them.

SMTP with ``smtplib`` (STARTTLS and login when configured), or a local maildir
(``<data_dir>/mail``) when no SMTP host is set — the embedded default. Each mail
is marked sent right after the server accepted it, one at a time, so a restart
sends nothing twice and loses nothing; only a SIGKILL in the instant between the
server's acceptance and that mark could repeat one mail, which carries a stable
``Message-ID`` (the outbox id) for the receiving side to drop. Failures are
retried with doubling back-off (10 s … 1 h) up to ``mail_max_attempts``.
"""

from __future__ import annotations

import html
import logging
import mailbox
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from string import Template
from typing import Protocol
from uuid import UUID

from pydantic import SecretStr

from adapters.observability import MAILS
from ca_core.portal import Portal
from projections.feed import catch_up
from projections.notifications import Mail, MailOutbox, NotificationProjection, Recipient, remind

log = logging.getLogger("partner_ca.mailer")

# (subject, body) per kind and language; $-placeholders come from the mail's params
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "pickup-link": {
        "cs": ("Váš certifikát je připraven",
               "Dobrý den,\n\nváš certifikát (sériové číslo $serial) je vydán. Vyzvedněte si jej "
               "jednorázovým odkazem:\n\n$link\n\nPlatnost certifikátu končí $not_after."),
        "en": ("Your certificate is ready",
               "Hello,\n\nyour certificate (serial $serial) has been issued. Pick it up with this "
               "single-use link:\n\n$link\n\nThe certificate is valid until $not_after."),
    },
    "revocation": {
        "cs": ("Váš certifikát byl zneplatněn",
               "Dobrý den,\n\nváš certifikát (sériové číslo $serial) byl zneplatněn $revoked_at "
               "(důvod: $reason). Pro nový certifikát požádejte o nové jednorázové heslo."),
        "en": ("Your certificate has been revoked",
               "Hello,\n\nyour certificate (serial $serial) was revoked at $revoked_at "
               "(reason: $reason). Ask for a new one-time password to get a new certificate."),
    },
    "expiry-reminder": {
        "cs": ("Váš certifikát brzy vyprší",
               "Dobrý den,\n\nplatnost vašeho certifikátu (sériové číslo $serial) končí "
               "$not_after. Obnovte jej v portálu, dokud je platný."),
        "en": ("Your certificate expires soon",
               "Hello,\n\nyour certificate (serial $serial) expires on $not_after. Renew it in "
               "the portal while it is still valid."),
    },
    "expiry": {
        "cs": ("Platnost vašeho certifikátu skončila",
               "Dobrý den,\n\nplatnost vašeho certifikátu (sériové číslo $serial) skončila "
               "$not_after. Pro nový certifikát požádejte o nové jednorázové heslo."),
        "en": ("Your certificate has expired",
               "Hello,\n\nyour certificate (serial $serial) expired on $not_after. Ask for a "
               "new one-time password to get a new certificate."),
    },
    "otp-locked": {
        "cs": ("Jednorázové heslo bylo zablokováno",
               "Dobrý den,\n\nvaše jednorázové heslo pro modul $module bylo po $attempts "
               "chybných pokusech zablokováno. Požádejte správce modulu o nové."),
        "en": ("Your one-time password was locked",
               "Hello,\n\nyour one-time password for module $module was locked after $attempts "
               "wrong attempts. Ask the module administrator for a new one."),
    },
}


class Transport(Protocol):
    def deliver(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SmtpServer:
    """Where mail is handed over: host, port, TLS (implicit or STARTTLS), login."""

    host: str
    port: int = 25
    ssl: bool = False
    starttls: bool = False
    username: str = ""
    password: SecretStr | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Letters:
    """What every mail needs: the sender, the portal's public address (links), and how many
    attempts a mail gets before it is given up."""

    mail_from: str
    public_url: str
    max_attempts: int = 8


class SmtpTransport:
    """smtplib, one connection kept open while there is mail to send."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server
        self.connection: smtplib.SMTP | None = None

    def deliver(self, message: EmailMessage) -> None:
        if self.connection is None:
            s = self.server
            context = ssl.create_default_context()
            self.connection = (smtplib.SMTP_SSL(s.host, s.port, timeout=30, context=context)
                               if s.ssl else smtplib.SMTP(s.host, s.port, timeout=30))
            if s.starttls and not s.ssl:
                self.connection.starttls(context=context)
            if s.username:
                password = s.password.get_secret_value() if s.password else ""
                self.connection.login(s.username, password)
        try:
            self.connection.send_message(message)
        except (smtplib.SMTPServerDisconnected, OSError):
            self.close()
            raise

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.connection = None


class MaildirTransport:
    """The embedded default: mails land in ``<data_dir>/mail`` (any mail client reads it)."""

    def __init__(self, path: Path) -> None:
        self.box = mailbox.Maildir(path, create=True)

    def deliver(self, message: EmailMessage) -> None:
        self.box.add(message)

    def close(self) -> None:
        self.box.close()


def render(mail: Mail, letters: Letters, pickup_token: Callable[[UUID], str]) -> EmailMessage:
    """Plain text plus HTML in the user's language (Czech by default, English otherwise)."""
    language = mail.language if mail.language in ("cs", "en") else "en"
    subject, body = TEMPLATES[mail.kind][language]
    params = dict(mail.params)
    if mail.kind == "pickup-link":  # the token is recomputed here, never stored
        request_id = UUID(params["request_id"])
        # a page with a button: fetching the link (a mail scanner does) uses nothing up
        params["link"] = (f"{letters.public_url.rstrip('/')}/pickup/{request_id}"
                          f"?token={pickup_token(request_id)}")
    text = Template(body).safe_substitute(params)
    message = EmailMessage()
    message["From"] = letters.mail_from
    message["To"] = mail.recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{mail.id}@partner-ca>"
    message["Content-Language"] = language
    message.set_content(text)
    paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>"
                         for p in text.split("\n\n"))
    if "link" in params:
        escaped = html.escape(params["link"])
        paragraphs = paragraphs.replace(escaped, f'<a href="{escaped}">{escaped}</a>')
    message.add_alternative(f"<!doctype html><html lang=\"{language}\"><body>{paragraphs}"
                            "</body></html>", subtype="html")
    return message


class Notifier:
    """Outbox in, mail out: ``step`` follows the portal's log, adds reminders, sends what is due."""

    def __init__(self, portal: Portal, letters: Letters, transport: Transport,
                 outbox: MailOutbox) -> None:
        self.portal = portal
        self.letters = letters
        self.transport = transport
        self.outbox = outbox
        self.projection = NotificationProjection(self.outbox)
        self.projection.owner = lambda request_id: portal.request(request_id).user_id
        self.projection.recipient = self.recipient
        self.projection.clock_now = portal.clock.now
        self.stopping = threading.Event()

    def recipient(self, user_id: str) -> Recipient:
        partner = self.portal.partner(user_id)
        return Recipient(user_id, partner.email, partner.language)

    def collect(self) -> int:
        """New outbox rows from the portal's log, and due expiry reminders."""
        added = catch_up(self.projection, self.portal)
        return added + remind(self.outbox, self.portal, self.recipient, self.portal.clock.now())

    def send_due(self, limit: int = 100) -> int:
        """Send what is due, marking each mail sent as soon as the server accepted it."""
        sent = 0
        for mail in self.outbox.due(self.portal.clock.now(), limit):
            if self.stopping.is_set():
                break  # a restart resumes with the rest; nothing is half-sent
            try:
                self.transport.deliver(render(mail, self.letters, self.portal.pickup_token))
            except Exception as exc:  # noqa: BLE001 - any delivery failure is retried
                attempts = mail.attempts + 1
                give_up = attempts >= self.letters.max_attempts
                delay = timedelta(seconds=min(10 * 2 ** (attempts - 1), 3600))
                MAILS.labels("failed").inc()
                self.outbox.mark_failed(mail.id, attempts, self.portal.clock.now() + delay,
                                        f"{type(exc).__name__}: {exc}", give_up)
                log.warning("mail %s to %s failed (attempt %d%s): %s", mail.id, mail.recipient,
                            attempts, ", giving up" if give_up else "", exc)
                continue
            self.outbox.mark_sent(mail.id, self.portal.clock.now())
            MAILS.labels("sent").inc()
            sent += 1
        if sent:
            log.info("sent %d mail(s)", sent)
        return sent

    def step(self) -> int:
        self.collect()
        return self.send_due()
