"""R11 at scale: `expire_due` keeps an index of issued certificates by notAfter, extended from
the log; revoked ones are dropped without reading them, and each run reads only what is new."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ca_core.clock import ManualClock
from tests.support import enroll, make_system, register


def test_expiry_index_follows_the_log(tmp_path: Path, database_url: str) -> None:
    system = make_system(tmp_path / "data", database_url)
    register(system)
    kept, revoked = enroll(system), enroll(system)
    system.ca.revoke(revoked.picked.serial, "keyCompromise", operator="ops")
    assert system.ca.expire_due() == []  # nothing due yet; the index is built
    clock = system.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(days=200))
    later = enroll(system)  # issued after the index was built: read on the next run
    clock.advance(timedelta(days=200))
    assert system.ca.expire_due() == [kept.picked.serial]  # the revoked one is not touched
    assert system.ca.certificate(kept.picked.serial).status == "expired"
    assert system.ca.certificate(revoked.picked.serial).status == "revoked"
    assert system.ca.expire_due() == []
    clock.advance(timedelta(days=200))
    assert system.ca.expire_due() == [later.picked.serial]
    system.close()
