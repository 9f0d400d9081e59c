"""Portal and CA as separate processes linked only by Kafka, with faults injected.

Each fault test puts a few hundred requests in flight, breaks something
(SIGKILL the CA, SIGKILL a relay, restart the broker, deliver everything twice)
and then checks that every request has exactly one certificate, no serial appears
twice, every revocation reached the CA exactly once and both event stores agree.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import build_ca, build_portal
from adapters.entrypoints.kafka_wiring import ensure_role_topics
from adapters.settings import Settings
from adapters.transport.kafka.inbox import source_name
from adapters.transport.kafka.security import role_credentials
from bench.workload import make_csrs, submit_requests, submit_revocations
from ca_core.clock import SystemClock
from ca_core.eventmodel import all_events
from ca_core.processing import RejectedMessage
from ca_core.request import CertificateRequest
from ca_core.treehead import TreeHeads
from tests.consistency import check_consistency
from tests.support import KAFKA_CREDENTIALS, PASSPHRASE, inherited_fds, kafka_env

ROOT = Path(__file__).resolve().parents[2]
IN_FLIGHT = 300


class Roles:
    """``partner-ca serve`` processes of one test."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, role: str, name: str | None = None, **extra: str) -> None:
        """``serve --role role``, known (and logged to ``<name>.log``) as ``name``."""
        name = name or role
        log = (self.logs / f"{name}.log").open("ab")
        env = {**self.env, **extra}
        self.procs[name] = subprocess.Popen(
            ["partner-ca", "serve", "--role", role], env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            pass_fds=inherited_fds(env))

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def kill(self, role: str) -> None:
        proc = self.procs.pop(role)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def assert_alive(self) -> None:
        for role, proc in self.procs.items():
            assert proc.poll() is None, (role, (self.logs / f"{role}.log").read_text()[-3000:])


def _database(url: str, name: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {name}")
    db_url = url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(db_url, autocommit=True) as conn:
        for table in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'"
                                  ).fetchall():
            conn.execute(f"DROP TABLE {table[0]} CASCADE")
    return db_url


@pytest.fixture
def env(tmp_path: Path, postgres_url: str, kafka_bootstrap: str,
        request: pytest.FixtureRequest) -> dict[str, str]:
    prefix = f"p{uuid.uuid4().hex[:10]}."
    replication = {}
    if request.node.get_closest_marker("cluster"):  # the three-node cluster
        kafka_bootstrap = request.getfixturevalue("kafka_cluster")
        replication = {"PARTNER_CA_KAFKA_REPLICATION_FACTOR": "3"}
    keys: dict[str, str] = {}
    if request.node.get_closest_marker("keys_on_token"):  # the CA keys on a SoftHSM2 token
        token = request.getfixturevalue("soft_token")
        keys = {"PARTNER_CA_KEY_STORE": "pkcs11", "PARTNER_CA_HSM_MODULE": token.module,
                "PARTNER_CA_HSM_TOKEN_LABEL": token.label, "PARTNER_CA_HSM_PIN": token.pin,
                "SOFTHSM2_CONF": token.conf}
    values = {
        "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
        "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE,
        "PARTNER_CA_PORTAL_DATABASE_URL": _database(postgres_url, "partner_ca_portal"),
        "PARTNER_CA_CA_DATABASE_URL": _database(postgres_url, "partner_ca_ca"),
        **kafka_env(kafka_bootstrap, prefix),
        "PARTNER_CA_KAFKA_CLIENT_PREFIX": prefix.rstrip("."),
        "PARTNER_CA_KAFKA_PARTITIONS": "4",
        "PARTNER_CA_PORTAL_LISTEN": "",  # no HTTP API in these processes
        "PARTNER_CA_NOTIFIER_IN_PORTAL": "false",
        **keys,
        **replication,
    }
    full = {**os.environ, **values}
    done = subprocess.run(["partner-ca", "init"], env=full, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return full


@pytest.fixture
def roles(env: dict[str, str], tmp_path: Path) -> Iterator[Roles]:
    running = Roles(env, tmp_path)
    yield running
    running.stop_all()


def settings_of(env: dict[str, str]) -> Settings:
    keys = {k.removeprefix("PARTNER_CA_").lower(): v for k, v in env.items()
            if k.startswith("PARTNER_CA_") and not k.startswith("PARTNER_CA_TEST")}
    return Settings.model_validate(keys)


@pytest.fixture
def apps(env: dict[str, str]) -> Iterator[tuple[Any, Any]]:
    """The test's own view of both stores (the portal's front end and an auditor)."""
    settings = settings_of(env)
    portal = build_portal(settings, SystemClock())
    ca = build_ca(settings, SystemClock())
    yield portal, ca
    portal.close()
    ca.close()


def wait_for(what: str, condition: Callable[[], bool], roles: Roles,
             timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        roles.assert_alive()
        time.sleep(0.5)
    logs = {p.name: p.read_text()[-2000:] for p in roles.logs.glob("*.log")}
    raise AssertionError(f"timed out waiting for {what}; logs: {logs}")


def count_of(app: Any, cls: type) -> int:
    return sum(1 for _, e in all_events(app) if isinstance(e, cls))


def all_ready(portal: Any, n: int) -> Callable[[], bool]:
    return lambda: count_of(portal, CertificateRequest.CertificateReady) >= n


def test_the_whole_lifecycle_across_processes(env: dict[str, str], roles: Roles,
                                              apps: tuple[Any, Any]) -> None:
    portal, ca = apps
    roles.start("ca")
    roles.start("portal")
    portal.register_partner("P24-000123", "p@example.com", ["EPAK"])
    _, otp = portal.issue_otp("P24-000123", "EPAK", issued_by="admin-epak")
    session = portal.login_with_otp("P24-000123", otp)
    key = softtoken.new_key()
    rid = portal.submit_request(session, softtoken.make_csr(key, "P24-000123"),
                                "revocation pw 1", "revocation pw 1")
    wait_for("issuance", lambda: portal.request(rid).state == "ready", roles)
    first = portal.pickup(rid, "P24-000123")
    challenge = portal.certificate_login.new_challenge()
    cert_session = portal.certificate_login.with_signature(first.certificate_pem, challenge,
                                                 softtoken.sign_challenge(key, challenge))
    new_key = softtoken.new_key()
    renewal = portal.request_renewal(cert_session, softtoken.make_csr(new_key, "P24-000123"),
                                     "revocation pw 2", "revocation pw 2")
    wait_for("renewal", lambda: portal.request(renewal).state == "ready", roles)
    renewed = portal.pickup(renewal, "P24-000123")
    wait_for("superseded", lambda: portal.request(rid).certificate_status == "revoked", roles)
    assert ca.status(first.serial).reason == "superseded"
    challenge = portal.certificate_login.new_challenge()
    new_session = portal.certificate_login.with_signature(renewed.certificate_pem, challenge,
                                                softtoken.sign_challenge(new_key, challenge))
    portal.revoke(new_session, "revocation pw 2", reason="keyCompromise")
    wait_for("revocation", lambda: portal.request(renewal).certificate_status == "revoked", roles)
    assert ca.status(renewed.serial).reason == "keyCompromise"
    # R8 + R11: a new enrollment, then expiry recorded by ops with the clock moved on
    _, otp2 = portal.issue_otp("P24-000123", "EPAK", issued_by="admin-epak")
    third = portal.submit_request(portal.login_with_otp("P24-000123", otp2),
                                  softtoken.make_csr(softtoken.new_key(), "P24-000123"),
                                  "revocation pw 3", "revocation pw 3")
    wait_for("third", lambda: portal.request(third).state == "ready", roles)
    done = subprocess.run(["partner-ca", "expire"], env={**env, "PARTNER_CA_NOW": "2099-01-01T00:00:00Z"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    wait_for("expiry", lambda: portal.request(third).certificate_status == "expired", roles)
    check_consistency(portal, ca)


def test_the_ca_role_on_kafka_reports_metrics_and_readiness(
        roles: Roles, apps: tuple[Any, Any]) -> None:
    """Issue 19: /metrics and /readyz of `serve --role ca` over the secured broker: the
    certificates it signed, its inbox's lag and relay's backlog, its broker check."""
    from tests.e2e.test_observability import scrape
    from tests.support import listener, port_of

    portal, _ = apps
    ops = listener()
    metrics = f"http://127.0.0.1:{port_of(ops)}"
    roles.start("ca", PARTNER_CA_METRICS_LISTEN=f"fd:{ops.fileno()}")
    roles.start("portal")
    ids = _load(portal, 20)
    wait_for("issuance", lambda: count_of(portal, CertificateRequest.CertificateReady) == 20,
             roles)
    wait_for("counted", lambda: scrape(metrics).get(
        ("partner_ca_certificates_issued_total", ())) == 20, roles)
    samples = scrape(metrics)
    assert samples[("partner_ca_ca_inbox_lag", ())] >= 0
    assert samples[("partner_ca_ca_relay_backlog", ())] >= 0
    ready = httpx.get(f"{metrics}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["ca-inbox-broker"] == "ok"
    assert len(ids) == 20
    ops.close()


def assigned(log: str, app: str = "ca") -> set[int] | None:
    """The partitions a worker's log last said its inbox was assigned (None: not yet)."""
    lines = [line for line in log.splitlines() if f"inbox {app}: assigned " in line]
    if not lines:
        return None
    listed = lines[-1].split(f"inbox {app}: assigned ", 1)[1].strip()
    return set() if listed == "nothing" else {int(p.split("@")[0]) for p in listed.split(", ")}


def _lease_holder(roles: Roles, names: list[str], lease: str) -> str | None:
    for name in names:
        if f"lease {lease} taken" in roles.log(name):
            return name
    return None


def test_sigkill_one_of_two_ca_workers(roles: Roles, apps: tuple[Any, Any]) -> None:
    """The survivor takes the dead worker's partitions within 30 s (its session times out),
    and the relay/publishing it held (leases); every request gets exactly one certificate."""
    portal, ca = apps
    roles.start("portal")
    roles.start("ca", "ca-1")
    roles.start("ca", "ca-2")
    workers = ["ca-1", "ca-2"]
    wait_for("both workers with partitions", lambda: all(
        assigned(roles.log(w)) for w in workers) and sum(
        len(assigned(roles.log(w)) or ()) for w in workers) == 4, roles, timeout=90)
    ids = _load_until_some_issued(portal, roles)
    victim = _lease_holder(roles, workers, "ca-relay") or "ca-1"
    survivor = next(w for w in workers if w != victim)
    roles.kill(victim)
    killed = time.monotonic()
    wait_for("the survivor to take every partition",
             lambda: assigned(roles.log(survivor)) == {0, 1, 2, 3}, roles, timeout=30)
    took = time.monotonic() - killed
    print(f"partitions of the killed CA worker taken over after {took:.1f} s")
    assert took < 30, took
    wait_for("the relay lease to move", lambda: "lease ca-relay taken" in roles.log(survivor),
             roles, timeout=60)
    asked = submit_revocations(portal, ids[:50])
    wait_for("all issued", all_ready(portal, len(ids)), roles)
    wait_for("revocations", lambda: count_of(
        portal, CertificateRequest.RevocationConfirmed) >= asked, roles)
    check_consistency(portal, ca)


def test_a_third_ca_worker_started_mid_stream(roles: Roles, apps: tuple[Any, Any]) -> None:
    portal, ca = apps
    roles.start("portal")
    roles.start("ca", "ca-1")
    roles.start("ca", "ca-2")
    ids = _load_until_some_issued(portal, roles)
    roles.start("ca", "ca-3")
    wait_for("the newcomer to get partitions", lambda: bool(assigned(roles.log("ca-3"))),
             roles, timeout=60)
    wait_for("all issued", all_ready(portal, len(ids)), roles)
    check_consistency(portal, ca)


@pytest.mark.cluster
def test_sigkill_one_of_three_brokers(roles: Roles, apps: tuple[Any, Any], env: dict[str, str],
                                      kafka_cluster: str) -> None:
    """Replication factor 3, min.insync.replicas 2: with one node killed nothing is lost and
    the system goes on; restarted, the node rejoins every partition's in-sync replicas."""
    from kafka import KafkaAdminClient

    portal, ca = apps
    roles.start("portal")
    roles.start("ca")
    ids = _load_until_some_issued(portal, roles)
    cluster = ["bash", str(ROOT / "deploy/kafka/cluster.sh")]
    subprocess.run([*cluster, "kill-node", "2"], check=True, timeout=120)
    asked = submit_revocations(portal, ids[:40])
    wait_for("all issued", all_ready(portal, len(ids)), roles, timeout=300)
    wait_for("revocations", lambda: count_of(
        portal, CertificateRequest.RevocationConfirmed) >= asked, roles)
    subprocess.run([*cluster, "start-node", "2"], check=True, timeout=300, capture_output=True)
    admin = KafkaAdminClient(bootstrap_servers=kafka_cluster,
                             **role_credentials(KAFKA_CREDENTIALS, "admin").client_options)
    prefix = env["PARTNER_CA_KAFKA_TOPIC_PREFIX"]
    topics = [prefix + t for t in ("requests", "ca-events", "portal-events")]

    def rejoined() -> bool:
        described = admin.describe_topics(topics)
        return all(2 in p["isr_nodes"] for t in described for p in t["partitions"])

    try:
        wait_for("node 2 back in every partition's ISR", rejoined, roles, timeout=120)
        more = _load(portal, 40)
        wait_for("issued after the rejoin", all_ready(portal, len(ids) + len(more)), roles)
    finally:
        admin.close()
    check_consistency(portal, ca)


def _load(portal: Any, n: int = IN_FLIGHT) -> list[Any]:
    return submit_requests(portal, make_csrs(n))


def _load_until_some_issued(portal: Any, roles: Roles) -> list[Any]:
    """Put requests in flight and return once the first certificates came back."""
    ids = _load(portal)
    wait_for("some issuance", lambda: count_of(portal, CertificateRequest.CertificateReady) > 20,
             roles)
    return ids


def test_sigkill_the_ca_mid_stream(roles: Roles, apps: tuple[Any, Any]) -> None:
    _sigkill_the_ca(roles, apps)


@pytest.mark.keys_on_token
def test_sigkill_the_ca_signing_on_a_token_mid_stream(roles: Roles, apps: tuple[Any, Any],
                                                      env: dict[str, str]) -> None:
    """The same with every CA key on a SoftHSM2 token: nothing lost, nothing doubled."""
    assert env["PARTNER_CA_KEY_STORE"] == "pkcs11"
    _sigkill_the_ca(roles, apps)
    keys = Path(env["PARTNER_CA_DATA_DIR"]) / "keys"  # at most the audit key's public half
    assert [p.name for p in keys.iterdir()] in ([], ["audit.pub.pem"]) if keys.exists() else True


def _sigkill_the_ca(roles: Roles, apps: tuple[Any, Any]) -> None:
    portal, ca = apps
    roles.start("portal")
    roles.start("ca")
    ids = _load_until_some_issued(portal, roles)
    asked = submit_revocations(portal, ids[:50])
    roles.kill("ca")
    roles.start("ca")
    wait_for("all issued", all_ready(portal, len(ids)), roles)
    asked += submit_revocations(portal, ids[:100])
    roles.kill("ca")
    roles.start("ca")
    wait_for("revocations", lambda: count_of(
        portal, CertificateRequest.RevocationConfirmed) >= asked, roles)
    facts = check_consistency(portal, ca)
    assert facts["certificates"] == len(ids) and facts["revocations"] == asked == 100


def test_sigkill_a_relay_mid_stream(roles: Roles, apps: tuple[Any, Any]) -> None:
    portal, ca = apps
    for role in ("portal-relay", "portal-inbox", "ca-inbox", "ca-relay"):
        roles.start(role)
    ids = _load_until_some_issued(portal, roles)
    roles.kill("ca-relay")
    roles.kill("portal-relay")
    asked = submit_revocations(portal, ids[:60])
    roles.start("portal-relay")
    roles.start("ca-relay")
    wait_for("all issued", all_ready(portal, len(ids)), roles)
    wait_for("revocations", lambda: count_of(
        portal, CertificateRequest.RevocationConfirmed) >= asked, roles)
    check_consistency(portal, ca)


def test_restart_the_broker_mid_stream(roles: Roles, apps: tuple[Any, Any],
                                       kafka_bootstrap: str) -> None:
    portal, ca = apps
    roles.start("portal")
    roles.start("ca")
    ids = _load_until_some_issued(portal, roles)
    subprocess.run(["bash", str(ROOT / "deploy/kafka/stop.sh")], check=True, timeout=120)
    asked = submit_revocations(portal, ids[:40])
    subprocess.run(["bash", str(ROOT / "deploy/kafka/start.sh")], check=True, timeout=300,
                   capture_output=True)
    wait_for("all issued", all_ready(portal, len(ids)), roles, timeout=300)
    wait_for("revocations", lambda: count_of(
        portal, CertificateRequest.RevocationConfirmed) >= asked, roles)
    check_consistency(portal, ca)


def _duplicate_topic(bootstrap: str, topic: str) -> tuple[int, dict[tuple[str, int], int]]:
    """Deliver every record of ``topic`` a second time (same key, value and headers); returns
    how many were copied and each partition's end offset after the copies."""
    admin = role_credentials(KAFKA_CREDENTIALS, "admin").client_options  # a super user
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000, **admin)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **admin)
    copied = 0
    for record in consumer:
        if record.offset < end[TopicPartition(record.topic, record.partition)]:
            producer.send(topic, value=record.value, key=record.key, headers=record.headers,
                          partition=record.partition)
            copied += 1
        if all(consumer.position(tp) >= end[tp] for tp in partitions):
            break
    producer.flush()
    producer.close()
    after = consumer.end_offsets(partitions)
    consumer.close()
    return copied, {(tp.topic, tp.partition): offset for tp, offset in after.items()}


def test_every_message_delivered_twice(roles: Roles, apps: tuple[Any, Any],
                                       env: dict[str, str]) -> None:
    portal, ca = apps
    roles.start("portal")
    roles.start("ca")
    ids = _load(portal)
    wait_for("all issued", all_ready(portal, len(ids)), roles)
    asked = submit_revocations(portal, ids[:80])
    wait_for("revocations", lambda: count_of(
        portal, CertificateRequest.RevocationConfirmed) >= asked, roles)
    before = check_consistency(portal, ca)
    prefix = env["PARTNER_CA_KAFKA_TOPIC_PREFIX"]
    copied = {consumer: _duplicate_topic(env["PARTNER_CA_KAFKA_BOOTSTRAP"], prefix + topic)
              for topic, consumer in (("requests", ca), ("ca-events", portal))}
    assert sum(n for n, _ in copied.values()) >= 2 * len(ids)

    def consumed() -> bool:  # evidence: each inbox's tracked position is past every copy
        return all((app.recorder.max_tracking_id(source_name(topic, partition)) or 0) >= end
                   for app, (_, ends) in copied.items()
                   for (topic, partition), end in ends.items())

    wait_for("both inboxes past the duplicates", consumed, roles)
    roles.assert_alive()
    assert check_consistency(portal, ca) == before


def test_malformed_messages_are_rejected_and_the_consumer_goes_on(
        roles: Roles, apps: tuple[Any, Any], env: dict[str, str]) -> None:
    portal, ca = apps
    roles.start("ca")
    roles.start("portal")
    topic = env["PARTNER_CA_KAFKA_TOPIC_PREFIX"] + "requests"
    settings = settings_of(env)
    ensure_role_topics(settings, "portal")
    # written as a broker super user (a leaked credential); signed with the portal's key
    # (a portal that went wrong), so that each reaches the decoder and is judged there
    producer = KafkaProducer(bootstrap_servers=env["PARTNER_CA_KAFKA_BOOTSTRAP"], acks="all",
                             **role_credentials(KAFKA_CREDENTIALS, "admin").client_options)
    signer = role_credentials(KAFKA_CREDENTIALS, "portal", signs=True).signer()
    good_type = b"cz.partner-ca.CertificateRequested.v1"
    bad = [
        ([("ce_specversion", b"1.0"), ("ce_type", good_type)], b"{not json"),
        ([("ce_specversion", b"1.0"), ("ce_type", b"cz.partner-ca.Nonsense.v1")], b"{}"),
        ([("ce_specversion", b"1.0"), ("ce_type", b"cz.partner-ca.CertificateRequested.v9")],
         b"{}"),
        ([("ce_specversion", b"1.0"), ("ce_type", good_type), ("ce_time", b"2026-01-01T00:00:00Z"),
          ("ce_id", b"x")], b'{"request_id": "not-a-uuid"}'),
        ([], b"no headers at all"),
        ([("ce_specversion", b"\xff\xfe")], b"\x00\x01"),
    ]
    for headers, value in bad:
        producer.send(topic, value=value, key=b"k", headers=signer.sign(topic, b"k", headers, value),
                      partition=0)
    producer.send(topic, value=b"{}", key=b"k", headers=bad[0][0], partition=0)  # unsigned
    producer.flush()
    ids = _load(portal, 20)
    wait_for("issuance after garbage", all_ready(portal, len(ids)), roles)
    wait_for("rejections recorded", lambda: count_of(
        ca, RejectedMessage.MessageRejected) >= len(bad) + 1, roles)
    reasons = [e.reason for _, e in all_events(ca) if isinstance(e, RejectedMessage.MessageRejected)]
    assert any("not JSON" in r for r in reasons)
    assert any("unknown event type" in r for r in reasons)
    assert any("schema version" in r for r in reasons)
    assert any("does not match its schema" in r for r in reasons)
    assert any("not signed" in r for r in reasons)
    check_consistency(portal, ca)


def test_the_portal_role_signs_its_heads_without_any_ca_secret(
        env: dict[str, str], roles: Roles, apps: tuple[Any, Any], tmp_path: Path) -> None:
    """Issue 26 item 7: the portal needed the CA key passphrase to sign its own tree heads,
    and that store opened the root and issuing keys too; a role started from a shell that
    exported a secret of another role's kept it in its environment (and its children)."""
    portal, _ca = apps
    audit = {"PARTNER_CA_AUDIT_KEY_PASSPHRASE": "audit key passphrase 1",
             "PARTNER_CA_AUDIT_CHECKPOINT_SECONDS": "1"}
    portal.register_partner("P24-000123", "p@example.com", ["EPAK"])
    roles.start("portal", **audit)  # env still exports the CA key passphrase
    heads = TreeHeads.TreeHeadSigned

    wait_for("a signed head over the portal's log", lambda: count_of(portal, heads) >= 1, roles)
    pid = roles.procs["portal"].pid
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {v.split(b"=", 1)[0] for v in environ}
    assert b"PARTNER_CA_KEY_PASSPHRASE" not in names
    assert b"PARTNER_CA_AUDIT_KEY_PASSPHRASE" in names
    assert "PARTNER_CA_KEY_PASSPHRASE" in roles.log("portal")  # it said what it dropped
    keys = Path(env["PARTNER_CA_DATA_DIR"]) / "audit-keys"
    assert sorted(p.name for p in keys.iterdir()) == ["audit.key.pem"]
    verified = subprocess.run(["partner-ca", "audit", "verify", "--app", "portal", "--json"],
                              env={**env, **audit}, capture_output=True, text=True,
                              timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout.splitlines()[-1])["intact"]


#: longer than every timeout a role meets while the broker is away: the inbox watchdog
#: (WEDGED_AFTER_SECONDS, 30 s), kafka-python's bootstrap and request timeouts (≤ 30 s), the
#: time a portal took to give up at start (31 s)
OUTAGE_SECONDS = 90.0


def test_a_broker_outage_longer_than_every_timeout(roles: Roles, apps: tuple[Any, Any],
                                                   env: dict[str, str]) -> None:
    """Issue 26 item 13: an outage of 73-90 s killed every Kafka role (a new consumer built
    in the main thread timed out: rc=1), and a portal started while the broker was down
    exited after 31 s with a traceback. Now the portal answers throughout (its log is the
    outbox), a portal started during the outage starts and waits, every role reconnects by
    itself, and every request made during the outage is issued after it."""
    from tests.support import listener, port_of

    portal, ca = apps
    sockets = {name: listener() for name in ("portal", "late")}
    urls = {name: f"http://127.0.0.1:{port_of(s)}" for name, s in sockets.items()}
    roles.start("ca")
    roles.start("portal", PARTNER_CA_PORTAL_LISTEN=f"fd:{sockets['portal'].fileno()}")
    for user in ("P24-000123",):
        portal.register_partner(user, "p@example.com", ["EPAK"])
    ids = submit_requests(portal, make_csrs(20))
    wait_for("first issued", all_ready(portal, len(ids)), roles)
    subprocess.run(["bash", str(ROOT / "deploy/kafka/stop.sh")], check=True, timeout=120)
    began = time.monotonic()
    during: list[str] = []
    late_started = False
    with httpx.Client(timeout=10) as client:
        while time.monotonic() - began < OUTAGE_SECONDS:
            roles.assert_alive()
            for name, url in urls.items():
                if name == "late" and not late_started:
                    continue
                assert client.get(url + "/v1/challenge").status_code == 200, name
            _, otp = portal.issue_otp("P24-000123", "EPAK", issued_by="admin-epak")
            token = client.post(urls["portal"] + "/v1/sessions/otp", json={
                "user_id": "P24-000123", "otp": otp}).json()["token"]
            accepted = client.post(urls["portal"] + "/v1/requests",
                                   headers={"Authorization": f"Bearer {token}"},
                                   json={"csr_pem": softtoken.make_csr(softtoken.new_key(),
                                                                       "P24-000123"),
                                         "revocation_password": "revocation pw 1",
                                         "revocation_password_again": "revocation pw 1"})
            assert accepted.status_code == 202, accepted.text
            during.append(accepted.json()["request_id"])
            if not late_started and time.monotonic() - began > 10:
                roles.start("portal", "late",
                            PARTNER_CA_PORTAL_LISTEN=f"fd:{sockets['late'].fileno()}")
                until_up = time.monotonic() + 30
                while time.monotonic() < until_up:
                    try:
                        if client.get(urls["late"] + "/v1/challenge").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.5)
                late_started = True
            time.sleep(3)
    roles.assert_alive()  # nothing exited during the outage
    subprocess.run(["bash", str(ROOT / "deploy/kafka/start.sh")], check=True, timeout=300,
                   capture_output=True)
    wait_for("every request of the outage issued", lambda: all(
        portal.request(UUID(r)).state == "ready" for r in during), roles, timeout=300)
    assert len(during) >= 20
    assert "Traceback" not in roles.log("late")
    check_consistency(portal, ca)
