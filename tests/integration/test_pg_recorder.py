"""The array-insert PostgreSQL recorder keeps the library's guarantees: positions in insert
order and returned, a conflicting version refused as IntegrityError with nothing written."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from adapters.entrypoints.bootstrap import build_ca
from adapters.settings import Settings
from adapters.storage.pgrecorder import ArrayInsertProcessRecorder
from ca_core.clock import SystemClock
from tests.conftest import reset_postgres


def test_positions_in_order_and_a_conflict_writes_nothing(tmp_path: Path,
                                                          postgres_url: str) -> None:
    reset_postgres(postgres_url)
    ca = build_ca(Settings(data_dir=tmp_path, database_url=postgres_url), SystemClock())
    recorder = ca.recorder
    assert isinstance(recorder, ArrayInsertProcessRecorder)
    first, second = uuid4(), uuid4()
    events = [StoredEvent(first, 1, "t:A", b"\x00one"), StoredEvent(first, 2, "t:B", b"two"),
              StoredEvent(second, 1, "t:A", bytes(range(256)))]
    ids = recorder.insert_events(events)
    assert ids is not None and list(ids) == sorted(ids) and len(ids) == 3
    stored = recorder.select_notifications(ids[0], 10)
    assert [(n.originator_id, n.originator_version, n.topic, n.state) for n in stored] == [
        (e.originator_id, e.originator_version, e.topic, e.state) for e in events]
    with pytest.raises(IntegrityError):
        recorder.insert_events([StoredEvent(uuid4(), 1, "t:A", b"new"),
                                StoredEvent(first, 2, "t:B", b"again")])
    assert recorder.max_notification_id() == ids[-1]
    ca.close()
