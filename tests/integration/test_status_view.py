"""The revocation-status view (projection with tracking) and point-in-time status from history."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import Tracking
from eventsourcing.projection import ProjectionRunner

from adapters.entrypoints.bootstrap import PartnerCa
from adapters.storage.migrate import apply_migrations
from adapters.storage.persistence import status_view, store_env
from adapters.storage.sql_status import PostgresStatusView
from ca_core.ca import CertificateAuthority
from ca_core.certificate_login import LoginRefused
from ca_core.eventmodel import read_log
from projections.feed import catch_up
from projections.status import RevocationStatusProjection, StatusView
from tests.conftest import reset_postgres
from tests.support import USER, advance, cert_login, enroll, make_system, register


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> tuple[str, Path]:
    return database_url, tmp_path


@pytest.fixture
def ca_system(store: tuple[str, Path]) -> Any:
    url, path = store
    if url:
        reset_postgres(url)
    system = make_system(path, url)
    register(system)
    yield system
    system.close()


def scratch_view(url: str, tmp_path: Path) -> StatusView:
    """An empty view somewhere else: a new SQLite file, or a scratch PostgreSQL database."""
    if not url:
        return status_view("", tmp_path / "scratch")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS partner_ca_scratch WITH (FORCE)")
        conn.execute("CREATE DATABASE partner_ca_scratch")
    scratch = url.rsplit("/", 1)[0] + "/partner_ca_scratch"
    apply_migrations(scratch)
    return status_view(scratch, tmp_path / "scratch")


def test_view_agrees_with_the_log_and_a_rebuild_equals_the_live_view(
        ca_system: PartnerCa, store: tuple[str, Path]) -> None:
    url, path = store
    live = RevocationStatusProjection(status_view(url, path))
    rng = random.Random(7)
    serials: list[str] = []
    for step in range(40):
        action = rng.choice(["issue", "issue", "revoke", "expire"])
        if action == "issue" or not serials:
            serials.append(enroll(ca_system).picked.serial)
        elif action == "revoke":
            ca_system.ca.revoke(rng.choice(serials), rng.choice(
                ["keyCompromise", "superseded", "cessationOfOperation"]), operator="ops")
        else:
            advance(ca_system, timedelta(days=rng.randint(1, 60)))
            ca_system.ca.expire_due()
        if step % 5 == 0:
            catch_up(live, ca_system.ca)  # the live view follows as it goes
            for serial in serials:
                row = live.view.get(serial)
                assert row is not None and row.status == ca_system.ca.certificate(serial).status
    catch_up(live, ca_system.ca)
    for serial in serials:
        row = live.view.get(serial)
        certificate = ca_system.ca.certificate(serial)
        assert row is not None
        assert (row.status, row.reason) == (certificate.status, certificate.revocation_reason)
    rebuilt = RevocationStatusProjection(scratch_view(url, path))
    assert catch_up(rebuilt, ca_system.ca) > 0
    assert rebuilt.view.rows() == live.view.rows()
    one_by_one = RevocationStatusProjection(status_view("", path / "one-by-one"))
    for position, event in read_log(ca_system.ca, topics=one_by_one.topics):
        one_by_one.process_event(event, Tracking(ca_system.ca.name, position))
    assert one_by_one.view.rows() == live.view.rows()  # a page at a time = event by event
    assert live.view.for_user(USER) == sorted(live.view.rows(), key=lambda r: (r.not_before, r.serial))


def test_two_processes_catching_up_one_view_at_once_neither_fails(
        ca_system: PartnerCa, store: tuple[str, Path]) -> None:
    """A portal process refreshes the view while the embedded ``serve`` catches it up too
    (the CI failure: ``IntegrityError: Failed to record tracking`` answered a login with 500)."""
    url, path = store
    serials = [enroll(ca_system).picked.serial for _ in range(3)]
    ours = RevocationStatusProjection(status_view(url, path))
    theirs = RevocationStatusProjection(status_view(url, path))
    process = ours.process_page
    raced: list[bool] = []

    def racing(page: Any, name: str) -> None:
        if not raced:  # once: the other process records everything between our read and write
            raced.append(True)
            catch_up(theirs, ca_system.ca)
        process(page, name)

    ours.process_page = racing  # type: ignore[method-assign]
    catch_up(ours, ca_system.ca)  # raised IntegrityError before
    assert raced
    assert catch_up(ours, ca_system.ca) == 0
    for serial in serials:
        row = ours.view.get(serial)
        assert row is not None and row.status == ca_system.ca.certificate(serial).status


def test_projection_runner_keeps_the_view_current(tmp_path: Path, postgres_url: str) -> None:
    """eventsourcing's ProjectionRunner (a thread subscribed to the CA's log) feeds the view.

    Subscriptions need PostgreSQL (the SQLite recorder has none); the embedded
    default catches up synchronously with ``catch_up`` instead.
    """
    reset_postgres(postgres_url)
    system = make_system(tmp_path, postgres_url)
    register(system)
    first = enroll(system)
    env = store_env(postgres_url, tmp_path, "ca")
    with ProjectionRunner(application_class=CertificateAuthority,
                          projection_class=RevocationStatusProjection,
                          view_class=PostgresStatusView, env=env) as runner:
        system.ca.revoke(first.picked.serial, "keyCompromise", operator="ops")
        # the runner tracks the positions of the events it subscribes to
        position = max(p for p, _ in read_log(system.ca, topics=RevocationStatusProjection.topics))
        runner.wait(position, timeout=10)
        row = runner.view.get(first.picked.serial)
        assert row is not None and (row.status, row.reason) == ("revoked", "keyCompromise")
    system.close()


def test_status_at_answers_for_past_instants(ca_system: PartnerCa) -> None:
    before = ca_system.clock.now()
    advance(ca_system, timedelta(hours=1))
    me = enroll(ca_system)
    serial = me.picked.serial
    advance(ca_system, timedelta(days=10))
    between = ca_system.clock.now()
    advance(ca_system, timedelta(days=1))
    ca_system.ca.revoke(serial, "keyCompromise", operator="ops-anna")
    advance(ca_system, timedelta(days=1))
    after = ca_system.clock.now()
    other = enroll(ca_system).picked.serial
    other_issued = ca_system.clock.now()
    advance(ca_system, timedelta(days=400))
    ca_system.ca.expire_due()
    later = ca_system.clock.now()

    assert ca_system.ca.status_at(serial, before).status == "unknown"
    at = ca_system.ca.status_at(serial, between)
    assert (at.status, at.decided_by) == ("good", "CertificateIssued")
    at = ca_system.ca.status_at(serial, after)
    assert (at.status, at.reason, at.decided_by) == ("revoked", "keyCompromise",
                                                     "CertificateRevoked")
    at = ca_system.ca.status_at(other, later)
    assert (at.status, at.decided_by) == ("expired", "CertificateExpired")
    assert ca_system.ca.status_at(other, after).status == "unknown"  # not yet issued
    assert ca_system.ca.status_at(other, other_issued).status == "good"


def test_r5_certificate_login_asks_the_status_view(tmp_path: Path, database_url: str) -> None:
    """The CA's revocation refuses the login before the portal's own request record hears of it
    (no message delivered yet): the portal's R5 source is the view fed from the CA's log."""
    system = make_system(tmp_path / "data", database_url)
    try:
        register(system)
        me = enroll(system)
        cert_login(system, me.picked.certificate_pem, me.key)
        system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops")  # not pumped
        assert system.portal.request(me.request_id).certificate_status == "good"
        with pytest.raises(LoginRefused) as refused:
            cert_login(system, me.picked.certificate_pem, me.key)
        assert refused.value.code == "certificate-revoked"
    finally:
        system.close()
