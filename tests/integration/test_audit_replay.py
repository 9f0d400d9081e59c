"""`audit replay`: every projection rebuilt from position 0 equals the live one; a live row that
does not follow from the history is reported."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from adapters.mailer import MaildirTransport, Notifier
from adapters.ocsp_server import maintain_ocsp, ocsp_responder
from adapters.persistence import status_view
from adapters.replay import replay
from projections.status import RevocationStatusProjection, catch_up
from tests.support import enroll, make_system, register


def test_replay_equals_live_and_reports_a_forged_row(tmp_path: Path, database_url: str) -> None:
    system = make_system(tmp_path / "data", database_url)
    register(system)
    good, bad = enroll(system), enroll(system)
    system.ca.revoke(bad.picked.serial, "keyCompromise", operator="ops")
    system.pump()
    # the live views, as the serve roles keep them
    catch_up(RevocationStatusProjection(status_view(database_url, tmp_path / "data")), system.ca)
    maintain_ocsp(ocsp_responder(system.ca, system.settings), system.ca)
    Notifier(system.portal, system.settings, MaildirTransport(tmp_path / "mail")).step()
    clean = replay(system.settings, tmp_path / "scratch")
    assert clean.differences == []
    assert clean.compared == {"revocation_status": 2, "ocsp_responses": 2, "mail_outbox": 3}
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
    report = replay(system.settings, tmp_path / "scratch2")
    assert sorted((d.view, d.key) for d in report.differences) == sorted([
        ("revocation_status", bad.picked.serial), ("revocation_status", "FEED"),
        ("ocsp_responses", good.picked.serial)])
    invented = next(d for d in report.differences if d.key == "FEED")
    removed = next(d for d in report.differences if d.view == "ocsp_responses")
    assert invented.rebuilt is None and invented.live is not None
    assert removed.live is None and removed.rebuilt is not None
    assert report.compared["revocation_status"] == 3
    system.close()
