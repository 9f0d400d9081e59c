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
    # someone edits the live status view by hand
    forged = "UPDATE revocation_status SET status = 'good' WHERE serial = ?"
    if database_url:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(forged.replace("?", "%s"), (bad.picked.serial,))
    else:
        db = sqlite3.connect(tmp_path / "data" / "revocation_status.sqlite")
        with db:
            db.execute(forged, (bad.picked.serial,))
        db.close()
    report = replay(system.settings, tmp_path / "scratch2")
    assert [(d.view, d.key) for d in report.differences] == [
        ("revocation_status", bad.picked.serial)]
    assert good.picked.serial not in str(report.differences)
    system.close()
