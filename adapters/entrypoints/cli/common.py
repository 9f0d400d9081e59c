"""What every audience's commands share: the root Typer app, opening the system with its
exit codes, the CA passphrase (CA-side commands only) and the forms serials and instants are
typed in."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from adapters.ca.keystore import KeyStoreError
from adapters.entrypoints.bootstrap import PartnerCa, build, key_store
from adapters.output import (
    EXIT_SETUP,
    EXIT_USAGE,
    configure_logging,
    fail,
    load_settings,
    out,
)
from adapters.settings import Settings
from adapters.storage.persistence import StoreUnavailable
from ca_core.ca import CaNotInitialised
from ca_core.certificate import parse_serial
from ca_core.errors import DomainError
from ca_core.ports import KeyStore
from projections.timeline import TimelineEntry

app = typer.Typer(help="Partner CA: an event-sourced certificate authority for a partner portal.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

log = logging.getLogger("partner_ca.cli")


@app.callback()
def _everywhere() -> None:
    """Partner CA: an event-sourced certificate authority for a partner portal."""
    configure_logging()


def ca_passphrase(confirm: bool = False) -> str | None:
    """The key passphrase: PARTNER_CA_KEY_PASSPHRASE, else a hidden prompt on a terminal
    (typed twice when ``confirm``: a typo there would lock the keys away for good)."""
    if "file" not in load_settings().key_store_kinds:
        return ""  # the keys are on the HSM token, opened with its PIN from the settings
    value = os.environ.get("PARTNER_CA_KEY_PASSPHRASE")
    if value:
        return value
    if sys.stdin.isatty():
        return str(typer.prompt("CA key passphrase", hide_input=True,
                                confirmation_prompt=confirm))
    return None


def open_keys(settings: Settings, passphrase: str) -> KeyStore:
    """The CA's key store, or exit 3 naming what is missing (never the secret)."""
    keys = key_store(settings, passphrase)
    if keys is None:
        fail("no PIN for the HSM token: set PARTNER_CA_HSM_PIN_FILE (or PARTNER_CA_HSM_PIN)",
             EXIT_SETUP)
    return keys


@contextmanager
def system(need_keys: bool = False, initialised: bool | None = True,
           user_side: bool = False) -> Iterator[PartnerCa]:
    """Open the configured system; turn every refusal into a one-line error and an exit code.

    The state is checked before any secret is asked for: a command that needs an
    initialised CA (``initialised``: True), or one that is not (``init``: False), says so
    first; then the key passphrase is asked for and the keys opened at once, so that a wrong
    passphrase ends here (exit 3), before anything is recorded.

    ``user_side``: a partner's command never asks for a CA secret. In the embedded wiring the
    CA signs in this process only when the CA role's own settings carry its passphrase
    (PARTNER_CA_KEY_PASSPHRASE, as on a one-machine installation); otherwise the request is
    recorded and the running ``serve`` signs it."""
    settings = load_settings()
    # in-process delivery makes the CA sign here: only where it can (its keys are opened first)
    in_process = not settings.kafka_bootstrap and (
        (need_keys and not user_side) or settings.ca_keys_configured)
    try:
        built = build(settings, transport="in-process" if in_process else None)
    except StoreUnavailable as exc:
        fail(str(exc), EXIT_SETUP)
    except Exception as exc:  # noqa: BLE001 - a view's store may be unreachable too
        fail(f"cannot open the stores: {exc}".splitlines()[0], EXIT_SETUP)
    try:
        if initialised:
            built.ca.authority()
        elif initialised is False and built.ca.is_initialised():
            fail("the CA is already initialised [ca-already-initialised]")
        if need_keys:
            passphrase = ca_passphrase(confirm=not initialised)
            if passphrase is None:
                fail("no CA key passphrase: set PARTNER_CA_KEY_PASSPHRASE or run on a "
                     "terminal", EXIT_SETUP)
            built.ca.keys = open_keys(settings, passphrase)
            if initialised:
                built.ca.hierarchy.unlock()
        elif in_process and initialised:
            built.ca.hierarchy.unlock()  # keys from the CA role's settings: a wrong passphrase ends here
        before = built.ca.recorder.max_notification_id() or 0
        yield built
        built.pump()
        if in_process and built.ca.keys is not None and built.ca.is_initialised() and (
                built.ca.recorder.max_notification_id() or 0) > before:
            _publish(built, settings)
    except (CaNotInitialised, KeyStoreError) as exc:
        fail(f"{exc} [{exc.code}]", EXIT_SETUP)
    except DomainError as exc:
        fail(f"{exc} [{exc.code}]")
    finally:
        built.close()




def _publish(built: PartnerCa, settings: Any) -> None:
    """This command signed or revoked in-process: publish OCSP answers and CRLs now, as
    ``serve`` would, so a relying party never meets a certificate the OCSP responder calls
    ``unauthorized`` (issue 26, item 14). A running ``serve`` publishes too; if the two meet,
    this one leaves it to ``serve``."""
    from adapters.entrypoints.ca_wiring import publish_now  # here: keeps the CLI's start-up short

    try:
        publish_now(built.ca, settings)
    except Exception as exc:  # noqa: BLE001 - the command itself has succeeded
        log.warning("OCSP/CRL not published by this command (%s); the CA role's serve "
                    "publishes them", type(exc).__name__)


# -- ops ----------------------------------------------------------------------
AppOpt = Annotated[str, typer.Option("--app", help="ca, portal or all.")]


def apps_named(s: PartnerCa, which: str) -> list[Any]:
    if which not in ("ca", "portal", "all"):
        fail(f"--app must be ca, portal or all, not {which!r}", EXIT_USAGE)
    return [a for a in (s.ca, s.portal) if which in ("all", a.name)]


def typed_serial(text: str) -> str:
    """A serial as typed, in the form the stores keep it; exit 2 if it is not one."""
    try:
        return parse_serial(text)
    except DomainError as exc:
        fail(f"{exc} [{exc.code}]", EXIT_USAGE)


def typed_instant(text: str) -> datetime:
    """An ISO 8601 instant (UTC when no offset is given), or exit 2."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{text!r} is not an ISO 8601 instant", EXIT_USAGE)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_TERSE_SKIP = {"request_id", "otp_id", "key_fingerprint", "session_expires_at", "not_before"}


def print_timeline(entries: list[TimelineEntry]) -> None:
    """One line per domain event: time, store, aggregate, event, key facts."""
    out.print("[bold]Partner CA — the manual's story as domain events[/bold]")
    for entry in entries:
        facts = " ".join(f"{k}={v}" for k, v in entry.event.public_fields().items()
                         if v is not None and k not in _TERSE_SKIP)
        out.print(f"{entry.event.timestamp:%Y-%m-%d %H:%M:%S}  {entry.store:<6}  "
                  f"{entry.aggregate:<18} {entry.type:<22} {facts}",
                  soft_wrap=True, markup=False, highlight=False)
