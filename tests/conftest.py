"""Fixtures: the event stores (SQLite file, and PostgreSQL started by deploy/postgres/start.sh)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from adapters.entrypoints.bootstrap import PartnerCa
from adapters.storage.migrate import apply_migrations
from tests.support import make_system

ROOT = Path(__file__).resolve().parent.parent
# key files are written with 10,000 PBKDF2 rounds here instead of 600,000 (0.1 s each, many
# times per test); tests/integration/test_key_files.py checks the default
os.environ.setdefault("PARTNER_CA_KEY_KDF_ITERATIONS", "10000")
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


@pytest.fixture(scope="session")
def kafka_cluster(kafka_bootstrap: str) -> str:
    """The three-node cluster of the fault tests (deploy/kafka/cluster.sh; the same service
    hierarchy's credentials as the single broker, which therefore starts first)."""
    return _service("PARTNER_CA_TEST_KAFKA_CLUSTER", "deploy/kafka/cluster.sh")


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


@dataclass(frozen=True)
class SoftToken:
    """A fresh SoftHSM2 token (its own label) in the session's SoftHSM2 directory."""

    module: str
    label: str
    pin: str
    conf: str


_SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.fixture(scope="session")
def softhsm_pool(tmp_path_factory: pytest.TempPathFactory) -> list[SoftToken]:
    """SoftHSM2 tokens made once per session: the library reads its slots once per process,
    so tokens initialised later would not be seen. Each test takes a fresh one."""
    if not Path(_SOFTHSM_MODULE).exists():
        pytest.fail("SoftHSM2 is not installed: run deploy/test.sh (apt-get install softhsm2)")
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # for python-pkcs11 here and child processes
    pool = []
    for _ in range(24):
        label = f"t{uuid.uuid4().hex[:10]}"
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin",
                        "123456", "--so-pin", "87654321"], check=True, capture_output=True)
        pool.append(SoftToken(_SOFTHSM_MODULE, label, "123456", str(conf)))
    return pool


@pytest.fixture
def soft_token(softhsm_pool: list[SoftToken]) -> SoftToken:
    if not softhsm_pool:
        pytest.fail("the session's SoftHSM2 token pool is used up: make it larger")
    return softhsm_pool.pop()
