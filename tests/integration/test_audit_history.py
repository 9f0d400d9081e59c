"""Issue 26 item 11: the history of one user or certificate answered from an index of the
logs (read once, then only what was added) and the aggregates' own records — the same
events, in the same order, as the whole timeline filtered."""

from __future__ import annotations

import time
from pathlib import Path

from adapters.audit.history import HistoryIndex
from projections.timeline import history, timeline
from tests.support import MODULE, USER, cert_login, enroll, make_system, register


def _keys(entries: list) -> list[tuple[str, int]]:
    return [(e.store, e.position) for e in entries]


def test_the_index_answers_what_the_whole_timeline_answers(tmp_path: Path,
                                                            database_url: str) -> None:
    system = make_system(tmp_path / "data", database_url)
    register(system)
    register(system, "P24-000999")
    me = enroll(system)
    other = enroll(system, "P24-000999")
    cert_login(system, me.picked.certificate_pem, me.key)
    system.portal.issue_otp(USER, MODULE, issued_by="admin")
    index = HistoryIndex()
    apps = [system.portal, system.ca]
    for user, serial in ((USER, None), (None, me.picked.serial), ("P24-000999", None),
                         (None, other.picked.serial), ("P24-NOBODY", None), (None, "ABCD")):
        whole = history(timeline(*apps), user_id=user, serial=serial)
        assert _keys(index.history(apps, user, serial)) == _keys(whole), (user, serial)
    # later events are picked up: only what was added is read
    system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops-anna")
    system.pump()
    whole = history(timeline(*apps), serial=me.picked.serial)
    found = index.history(apps, serial=me.picked.serial)
    assert _keys(found) == _keys(whole) and "CertificateRevoked" in {e.type for e in found}
    system.close()


def test_a_question_reads_only_what_concerns_it(tmp_path: Path) -> None:
    """After the first question, the cost of one is that of its own events, not the log's
    (the old page read and decoded both logs for every request)."""
    system = make_system(tmp_path / "data")
    register(system)
    for n in range(30):
        register(system, f"P24-{n:06d}")
        system.portal.issue_otp(f"P24-{n:06d}", MODULE, issued_by="admin")
    me = enroll(system)
    apps = [system.portal, system.ca]
    index = HistoryIndex()
    index.history(apps, serial=me.picked.serial)  # reads the logs once

    def timed(run: object) -> float:
        began = time.perf_counter()
        for _ in range(20):
            run()  # type: ignore[operator]
        return time.perf_counter() - began

    whole = timed(lambda: history(timeline(*apps), serial=me.picked.serial))
    indexed = timed(lambda: index.history(apps, serial=me.picked.serial))
    assert indexed < whole / 2, (indexed, whole)
    system.close()
