"""`audit replay`: every projection rebuilt from position 0 equals the live one; a live row that
does not follow from the history is reported."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from adapters.audit.replay import replay
from adapters.entrypoints.audit_wiring import live_stores
from adapters.entrypoints.ca_wiring import ocsp_publisher_of
from adapters.entrypoints.mail_wiring import notifier_for
from adapters.entrypoints.relying_wiring import responder_of
from adapters.portal.mailer import MaildirTransport
from adapters.storage.persistence import status_view
from projections.feed import catch_up
from projections.status import RevocationStatusProjection
from tests.support import enroll, make_system, register


def test_replay_equals_live_and_reports_a_forged_row(tmp_path: Path, database_url: str) -> None:
    system = make_system(tmp_path / "data", database_url)
    register(system)
    good, bad = enroll(system), enroll(system)
    system.ca.revoke(bad.picked.serial, "keyCompromise", operator="ops")
    system.pump()
    # the live views, as the serve roles keep them
    catch_up(RevocationStatusProjection(status_view(database_url, tmp_path / "data")), system.ca)
    ocsp_publisher_of(system.ca, system.settings).step()
    notifier_for(system.portal, system.settings, MaildirTransport(tmp_path / "mail")).step()
    clean = replay(live_stores(system.settings), tmp_path / "scratch")
    assert clean.differences == []
    assert clean.compared == {"revocation_status": 2, "ocsp_responses": 2, "mail_outbox": 3,
                              "ocsp_signed_responses": 3}  # with the root's about the issuing CA
    # someone edits the live views by hand: a changed row, a removed one, an invented one
    forged = [("revocation_status", "UPDATE revocation_status SET status = 'good' "
               "WHERE serial = ?", (bad.picked.serial,)),
              ("revocation_status", "INSERT INTO revocation_status SELECT 'FEED', user_id, "
               "module, request_id, not_before, not_after, status, reason, changed_at, "
               "changed_by, cause_position FROM revocation_status WHERE serial = ?",
               (good.picked.serial,)),
              ("ocsp_responses", "DELETE FROM ocsp_responses WHERE serial = ?",
               (good.picked.serial,))]
    for view, statement, args in forged:
        if database_url:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(statement.replace("?", "%s"), args)
        else:
            db = sqlite3.connect(tmp_path / "data" / f"{view}.sqlite")
            with db:
                db.execute(statement, args)
            db.close()
    report = replay(live_stores(system.settings), tmp_path / "scratch2")
    assert sorted((d.view, d.key) for d in report.differences) == sorted([
        ("revocation_status", bad.picked.serial), ("revocation_status", "FEED"),
        ("ocsp_responses", good.picked.serial)])
    invented = next(d for d in report.differences if d.key == "FEED")
    removed = next(d for d in report.differences if d.view == "ocsp_responses")
    assert invented.rebuilt is None and invented.live is not None
    assert removed.live is None and removed.rebuilt is not None
    assert report.compared["revocation_status"] == 3
    system.close()


def _write(database_url: str, data_dir: Path, view: str, statement: str,
           args: tuple[object, ...]) -> None:
    if database_url:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(statement.replace("?", "%s"), args)
    else:
        db = sqlite3.connect(data_dir / f"{view}.sqlite")
        with db:
            db.execute(statement, args)
        db.close()


def test_replay_finds_a_revoked_certificates_response_swapped_for_its_earlier_good_one(
        tmp_path: Path, database_url: str) -> None:
    """The row still says revoked; the stored bytes, validly signed, say good: a GET without a
    nonce would answer good. Replay reads what each stored response says."""
    system = make_system(tmp_path / "data", database_url)
    register(system)
    me = enroll(system)
    responder = responder_of(system.ca, system.settings)
    ocsp_publisher_of(system.ca, system.settings).step()
    before = responder.store.get(me.picked.serial)
    assert before is not None and before.status == "good"
    system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops")
    ocsp_publisher_of(system.ca, system.settings).step()
    catch_up(RevocationStatusProjection(status_view(database_url, tmp_path / "data")), system.ca)
    assert replay(live_stores(system.settings), tmp_path / "scratch").differences == []
    _write(database_url, tmp_path / "data", "ocsp_responses",
           "UPDATE ocsp_responses SET sha1_der = ?, sha256_der = ? WHERE serial = ?",
           (before.sha1_der, before.sha256_der, me.picked.serial))
    report = replay(live_stores(system.settings), tmp_path / "scratch2")
    found = [str(d) for d in report.differences]
    assert found and all(me.picked.serial in line for line in found), found
    assert any("sha1 response says good, its row revoked" in line for line in found), found
    assert any("sha256 response says good, its row revoked" in line for line in found), found
    system.close()


def test_replay_finds_a_response_of_another_certificate_or_signer(tmp_path: Path) -> None:
    system = make_system(tmp_path / "data")
    register(system)
    first, second = enroll(system), enroll(system)
    responder = responder_of(system.ca, system.settings)
    ocsp_publisher_of(system.ca, system.settings).step()
    other = responder.store.get(second.picked.serial)
    assert other is not None
    _write("", tmp_path / "data", "ocsp_responses",
           "UPDATE ocsp_responses SET sha256_der = ? WHERE serial = ?",
           (other.sha256_der, first.picked.serial))
    _write("", tmp_path / "data", "ocsp_responses",
           "UPDATE ocsp_responses SET signer_serial = 'abcdef' WHERE serial = ?",
           (second.picked.serial,))
    found = [str(d) for d in replay(live_stores(system.settings), tmp_path / "scratch").differences]
    assert any(f"{first.picked.serial}: sha256 response is about serial "
               f"{second.picked.serial}" in line for line in found), found
    assert any(second.picked.serial in line and "a signer the CA never recorded" in line
               for line in found), found
    system.close()


def test_cli_replay_under_the_production_wiring_with_a_database_per_application(
        tmp_path: Path, postgres_url: str) -> None:
    """PARTNER_CA_PORTAL_DATABASE_URL and PARTNER_CA_CA_DATABASE_URL without
    PARTNER_CA_DATABASE_URL (the README's production wiring)."""
    import os
    import subprocess

    from tests.e2e.test_kafka_processes import _database

    portal_url, ca_url = (_database(postgres_url, "partner_ca_replay_portal"),
                          _database(postgres_url, "partner_ca_replay_ca"))
    from adapters.storage.migrate import apply_migrations

    for url in (portal_url, ca_url):  # as init (CA) and serve (portal's mail outbox) do
        apply_migrations(url)
    system = make_system(tmp_path / "data", portal_database_url=portal_url,
                         ca_database_url=ca_url)
    register(system)
    enroll(system)
    ocsp_publisher_of(system.ca, system.settings).step()
    catch_up(RevocationStatusProjection(status_view(ca_url, tmp_path / "data")), system.ca)
    system.close()
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_PORTAL_DATABASE_URL": portal_url, "PARTNER_CA_CA_DATABASE_URL": ca_url}
    env.pop("PARTNER_CA_DATABASE_URL", None)
    done = subprocess.run(["partner-ca", "audit", "replay", "--json"], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    import json

    summary = json.loads(done.stdout)
    assert summary["differences"] == [] and summary["compared"]["revocation_status"] == 1
    assert not list((tmp_path / "data").glob("revocation_status*.sqlite")), \
        "no SQLite view files under the PostgreSQL wiring"
