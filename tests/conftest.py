"""Fixtures: the event stores (SQLite file, and PostgreSQL started by deploy/postgres/start.sh)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from adapters.bootstrap import PartnerCa
from tests.support import make_system

ROOT = Path(__file__).resolve().parent.parent
APP_TABLES = ("portal_events", "portal_tracking", "ca_events", "ca_tracking")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test database; the server is started here if the test command did not start it."""
    url = os.environ.get("PARTNER_CA_TEST_DATABASE_URL")
    if not url:
        done = subprocess.run(["bash", str(ROOT / "deploy/postgres/start.sh")],
                              check=True, capture_output=True, text=True)
        url = done.stdout.strip().splitlines()[-1]
        os.environ["PARTNER_CA_TEST_DATABASE_URL"] = url
    return url


def reset_postgres(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in APP_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each application test runs on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        return ""
    url: str = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


@pytest.fixture
def system(database_url: str, tmp_path: Path) -> Iterator[PartnerCa]:
    built = make_system(tmp_path, database_url)
    yield built
    built.close()
