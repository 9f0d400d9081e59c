"""Fixtures: the event stores (SQLite file, and PostgreSQL started by deploy/postgres/start.sh)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from adapters.bootstrap import PartnerCa
from adapters.migrate import apply_migrations
from tests.support import make_system

ROOT = Path(__file__).resolve().parent.parent
APP_TABLES = ("portal_events", "portal_tracking", "ca_events", "ca_tracking",
              "portal_relay_tracking", "ca_relay_tracking", "revocation_status_tracking",
              "ocsp_responses_tracking", "mail_outbox_tracking")


def _service(variable: str, start_script: str) -> str:
    """A service's address: from the test command, or started here by its deploy script."""
    address = os.environ.get(variable)
    if not address:
        done = subprocess.run(["bash", str(ROOT / start_script)],
                              check=True, capture_output=True, text=True)
        address = done.stdout.strip().splitlines()[-1]
        os.environ[variable] = address
    return address


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test database (deploy/postgres/start.sh)."""
    return _service("PARTNER_CA_TEST_DATABASE_URL", "deploy/postgres/start.sh")


def reset_postgres(url: str) -> None:
    apply_migrations(url)
    with psycopg.connect(url, autocommit=True) as conn:
        for table in APP_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        conn.execute("DELETE FROM revocation_status")
        conn.execute("DELETE FROM ocsp_responses")
        conn.execute("DELETE FROM mail_outbox")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The test broker (deploy/kafka/start.sh)."""
    return _service("PARTNER_CA_TEST_KAFKA", "deploy/kafka/start.sh")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each application test runs on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        return ""
    url: str = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


@pytest.fixture(params=["sqlite+in-process", "postgres+in-process", "postgres+kafka"])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PartnerCa]:
    """The transport contract: every lifecycle test runs over each transport and store."""
    store, transport = request.param.split("+")
    url = ""
    if store == "postgres":
        url = request.getfixturevalue("postgres_url")
        reset_postgres(url)
    bootstrap, prefix = "", ""
    if transport == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        prefix = f"t{uuid.uuid4().hex[:12]}."
    built = make_system(tmp_path, url, kafka_bootstrap=bootstrap, kafka_prefix=prefix)
    yield built
    built.close()
