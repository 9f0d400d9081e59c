"""Whole-log reads split by aggregate (``records(part=...)``, as ``audit replay`` uses them):
the parts are disjoint, cover the log, keep its order and hold whole aggregates — on
SQLite, on PostgreSQL and through the library's own reads."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate

from adapters.storage.logreader import originator_bytes, part_of, records
from tests.support import enroll, make_system, register


@pytest.mark.parametrize("parts", [2, 3])
def test_parts_cover_the_log_by_aggregate(tmp_path: Path, database_url: str, parts: int) -> None:
    system = make_system(tmp_path / "data", database_url)
    register(system)
    for _ in range(6):
        enroll(system)
    everything = list(records(system.ca))
    split = {k: list(records(system.ca, part=(k, parts))) for k in range(parts)}
    assert sorted(r for found in split.values() for r in found) == everything
    for k, found in split.items():
        assert [r.position for r in found] == sorted(r.position for r in found)
        assert {part_of(UUID(bytes=originator_bytes(r)), parts) for r in found} <= {k}
    system.close()


def test_parts_through_the_library_reads() -> None:
    app = Application[UUID]()  # in-memory recorder: the fallback path
    ids = []
    for _ in range(20):
        aggregate = Aggregate()
        app.save(aggregate)
        ids.append(aggregate.id)
    everything = list(records(app))
    halves = [list(records(app, part=(k, 2))) for k in range(2)]
    assert sorted(halves[0] + halves[1]) == everything
    assert {part_of(r.originator_id, 2) for r in halves[1]} == {1}  # type: ignore[arg-type]
