"""The notifier wired from the settings (the wiring room: adapters/portal/mailer.py takes
values): the SMTP server or the maildir, what every mail needs, the outbox, and the role's
loop (``serve --role notifier``)."""

from __future__ import annotations

import logging
import threading

from adapters.periodic import run_periodically
from adapters.portal.mailer import (
    Letters,
    MaildirTransport,
    Notifier,
    SmtpServer,
    SmtpTransport,
    Transport,
)
from adapters.settings import Settings
from adapters.storage.persistence import mail_outbox
from ca_core.portal import Portal

log = logging.getLogger("adapters.portal.mailer")


def smtp_server(settings: Settings) -> SmtpServer:
    return SmtpServer(settings.smtp_host, settings.smtp_port, settings.smtp_ssl,
                      settings.smtp_starttls, settings.smtp_username, settings.smtp_password)


def letters(settings: Settings) -> Letters:
    return Letters(settings.mail_from, settings.portal_public_url, settings.mail_max_attempts)


def transport_for(settings: Settings) -> Transport:
    """SMTP when ``PARTNER_CA_SMTP_HOST`` is set, else the maildir in the data directory."""
    if settings.smtp_host:
        return SmtpTransport(smtp_server(settings))
    return MaildirTransport(settings.data_dir / "mail")


def notifier_for(portal: Portal, settings: Settings, transport: Transport) -> Notifier:
    return Notifier(portal, letters(settings), transport,
                    mail_outbox(settings.store_url("portal"), settings.data_dir))


def run_notifier(portal: Portal, settings: Settings, stop: threading.Event) -> None:
    """``serve --role notifier``: a step every ``relying_poll_seconds`` until stopped."""
    transport = transport_for(settings)
    notifier = notifier_for(portal, settings, transport)
    notifier.stopping = stop

    def step() -> None:
        notifier.step()

    log.info("notifier: %s", f"SMTP {settings.smtp_host}:{settings.smtp_port}"
             if settings.smtp_host else f"maildir {settings.data_dir / 'mail'}")
    run_periodically("notifier step", step, stop, log, interval=settings.relying_poll_seconds)
    transport.close()
