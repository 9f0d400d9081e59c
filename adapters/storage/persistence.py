"""Event-store wiring: SQLite files by default, PostgreSQL (psycopg 3) by configuration."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import psycopg
from eventsourcing.persistence import InfrastructureFactory, PersistenceError, TrackingRecorder
from eventsourcing.utils import Environment, get_topic
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random

from adapters.storage.pgrecorder import ArrayInsertApplicationRecorder, ArrayInsertProcessRecorder
from adapters.storage.sql_mail import PostgresMailOutbox, SQLiteMailOutbox
from adapters.storage.sql_ocsp import PostgresOcspStore, SQLiteOcspStore
from adapters.storage.sql_status import PostgresStatusView, SQLiteStatusView
from ca_core.ca import CertificateAuthority
from ca_core.clock import Clock
from ca_core.errors import NotReady
from ca_core.policy import IssuancePolicy, PortalPolicy
from ca_core.portal import Portal
from projections.notifications import MailOutbox
from projections.ocsp import OcspStore
from projections.status import StatusView

T = TypeVar("T")


def private_directory(path: Path) -> Path:
    """``path`` made (if need be) and readable by its owner only (0700), whatever the umask:
    the data directory holds the stores' hashes, e-mail addresses, CSRs and the keys."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """``path`` created if missing and set to 0600 before anything is written to it (SQLite
    gives its journal files the mode of the database file)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    if path.stat().st_mode & 0o777 != 0o600:
        path.chmod(0o600)
    return path


def store_env(database_url: str, data_dir: Path, app_name: str) -> dict[str, str]:
    """The eventsourcing environment for one application's event store.

    SQLite: one file per application (``<data_dir>/<app>.sqlite``).
    PostgreSQL: one database, tables prefixed by the application name.
    """
    if not database_url:
        private_directory(data_dir)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(private_file(data_dir / f"{app_name}.sqlite")),
            "SQLITE_LOCK_TIMEOUT": "10",
        }
    url = urlparse(database_url)
    if url.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"unsupported database URL scheme {url.scheme!r} (use postgresql://)")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/") or "partner_ca",
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "POSTGRES_POOL_SIZE": "4",
        # events inserted as plain arrays in binary (adapters/storage/pgrecorder.py)
        "APPLICATION_RECORDER_TOPIC": get_topic(ArrayInsertApplicationRecorder),
        "PROCESS_RECORDER_TOPIC": get_topic(ArrayInsertProcessRecorder),
    }


@dataclass(frozen=True)
class RawLog:
    """An application's event log as stored bytes: its name and its recorder, no mapper, no
    aggregates — what ``audit verify`` reads, so a tampered record cannot stop it."""

    name: str
    recorder: Any


def raw_log(url: str, data_dir: Path, app_name: str) -> RawLog:
    env = Environment(app_name, store_env(url, data_dir, app_name))
    return open_store(app_name, url, data_dir, lambda: RawLog(
        app_name, InfrastructureFactory[Any].construct(env).application_recorder()))


def position_recorder(database_url: str, data_dir: Path, name: str) -> TrackingRecorder:
    """A tracking table of its own (``<name>_tracking``), e.g. how far a relay has published."""
    env = Environment(name, store_env(database_url, data_dir, name))
    return InfrastructureFactory[TrackingRecorder].construct(env).tracking_recorder()


def status_view(database_url: str, data_dir: Path) -> StatusView:
    """The revocation-status view: its own SQLite file, or the CA's PostgreSQL database."""
    name = "revocation_status"
    env = Environment(name, store_env(database_url, data_dir, name))
    view_class: type[StatusView] = PostgresStatusView if database_url else SQLiteStatusView
    return InfrastructureFactory[StatusView].construct(env).tracking_recorder(view_class)


def ocsp_store(database_url: str, data_dir: Path) -> OcspStore:
    """The pre-signed OCSP responses: their own SQLite file, or the CA's PostgreSQL database."""
    name = "ocsp_responses"
    env = Environment(name, store_env(database_url, data_dir, name))
    store_class: type[OcspStore] = PostgresOcspStore if database_url else SQLiteOcspStore
    return InfrastructureFactory[OcspStore].construct(env).tracking_recorder(store_class)


def mail_outbox(database_url: str, data_dir: Path) -> MailOutbox:
    """The email outbox: its own SQLite file, or the portal's PostgreSQL database."""
    name = "mail_outbox"
    env = Environment(name, store_env(database_url, data_dir, name))
    outbox_class: type[MailOutbox] = PostgresMailOutbox if database_url else SQLiteMailOutbox
    return InfrastructureFactory[MailOutbox].construct(env).tracking_recorder(outbox_class)


class StoreUnavailable(NotReady):
    """An event store cannot be opened; the message names which one and why."""

    code = "store-unavailable"


def describe_store(url: str, data_dir: Path, app_name: str) -> str:
    """Where an application's store is, without the password."""
    if not url:
        return f"SQLite {data_dir / (app_name + '.sqlite')}"
    parsed = urlparse(url)
    user = f"{parsed.username}@" if parsed.username else ""
    return f"PostgreSQL {user}{parsed.hostname}:{parsed.port or 5432}{parsed.path}"


def _why_unreachable(url: str, exc: Exception) -> str:
    """The server's own reason (no such database, authentication failed, …): the pool in
    front of it only says it got no connection in time."""
    if url:
        try:
            psycopg.connect(url, connect_timeout=3).close()
        except psycopg.Error as direct:
            return str(direct).strip().splitlines()[-1].removeprefix("FATAL:  ")
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def open_store(app_name: str, url: str, data_dir: Path, make: Callable[[], T]) -> T:
    """``make()`` an application on its store (``url``; SQLite under ``data_dir`` when
    empty), or StoreUnavailable naming the store."""
    try:
        return make()
    except (psycopg.Error, PersistenceError, OSError, ValueError) as exc:
        what = {"ca": "the CA's", "portal": "the portal's"}.get(app_name, app_name)
        raise StoreUnavailable(
            f"cannot open {what} event store ({describe_store(url, data_dir, app_name)}"
            f"): {_why_unreachable(url, exc)}", code="store-unavailable") from exc


def open_ca_store(url: str, data_dir: Path, policy: IssuancePolicy,
                  clock: Clock | None = None) -> CertificateAuthority:
    """The CA application on its store without any key (what read-only roles open)."""
    return open_store("ca", url, data_dir, lambda: CertificateAuthority(
        store_env(url, data_dir, "ca"), clock=clock, policy=policy))


def opening() -> Retrying:
    """Retries for opening stores: processes starting at once race on CREATE TABLE IF NOT
    EXISTS in PostgreSQL ("tuple concurrently updated"), so try again a few times."""
    return Retrying(stop=stop_after_attempt(5), wait=wait_random(0.2, 1.0),
                    retry=retry_if_exception_type((psycopg.Error, PersistenceError,
                                                   StoreUnavailable)),
                    reraise=True)


def open_portal_store(url: str, data_dir: Path, policy: PortalPolicy,
                      clock: Clock | None = None) -> Portal:
    """The portal application on its store, for reading (audit): without the portal secret,
    so it can check no login and sign no pickup link."""
    return open_store("portal", url, data_dir, lambda: Portal(
        store_env(url, data_dir, "portal"), clock=clock, policy=policy))
