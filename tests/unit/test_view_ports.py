"""The read models' ports answer alike in memory (adapters/storage/memory_views.py, what
``audit replay`` rebuilds into) and in SQL (SQLite here; PostgreSQL in the integration
tests): the same rows in, the same answers out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from adapters.storage.memory_views import MemoryMailOutbox, MemoryOcspStore, MemoryStatusView
from adapters.storage.persistence import mail_outbox, ocsp_store, status_view
from projections.notifications import Mail
from projections.ocsp import CA_PREFIX, StoredResponse
from projections.status import StatusRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _status(serial: str, user: str, status: str, position: int, day: int) -> StatusRow:
    return StatusRow(serial, user, "PRODEJ", uuid4(), T0 + timedelta(days=day),
                     T0 + timedelta(days=day + 365), status,
                     "keyCompromise" if status == "revoked" else None,
                     T0 + timedelta(days=day + 1) if status == "revoked" else None,
                     "ops" if status == "revoked" else None, position)


STORES: dict[str, list[Callable[[Path], Any]]] = {
    "status": [lambda _: MemoryStatusView(), lambda p: status_view("", p)],
    "ocsp": [lambda _: MemoryOcspStore(), lambda p: ocsp_store("", p)],
    "mail": [lambda _: MemoryMailOutbox(), lambda p: mail_outbox("", p)],
}


@pytest.mark.parametrize("make", STORES["status"], ids=["memory", "sqlite"])
def test_status_view_port(tmp_path: Path, make: Callable[[Path], Any]) -> None:
    view = make(tmp_path)
    view.save_rows([_status("0B", "anna", "good", 1, 2), _status("0A", "anna", "revoked", 3, 1),
                    _status("0C", "ben", "revoked", 2, 0)], Tracking("ca", 3))
    assert view.max_tracking_id("ca") == 3
    with pytest.raises(IntegrityError):
        view.save_rows([], Tracking("ca", 3))
    assert [r.serial for r in view.for_user("anna")] == ["0A", "0B"]
    assert [r.serial for r in view.rows()] == ["0A", "0B", "0C"]
    assert view.get("0B").status == "good" and view.get("FF") is None
    assert sorted((e.serial, e.reason) for e in view.revoked_entries()) == [
        ("0A", "keyCompromise"), ("0C", "keyCompromise")]
    assert view.revoked_position() == 3


def _answer(serial: str, signed: datetime, signer: str, position: int) -> StoredResponse:
    return StoredResponse(serial, "good", None, None, b"1", b"256", signed,
                          signed + timedelta(hours=24), signer, position)


@pytest.mark.parametrize("make", STORES["ocsp"], ids=["memory", "sqlite"])
def test_ocsp_store_port(tmp_path: Path, make: Callable[[Path], Any]) -> None:
    store = make(tmp_path)
    store.save([_answer("0A", T0, "S1", 1), _answer("0B", T0 + timedelta(hours=13), "S1", 2),
                _answer("0C", T0 + timedelta(hours=14), "OLD", 3),
                _answer(CA_PREFIX + "0D", T0, "ROOT", 0)], Tracking("ca", 3))
    assert [r.serial for r in store.rows()] == ["0A", "0B", "0C"]
    assert [r.serial for r in store.due(T0 + timedelta(hours=12), ["S1"], 10)] == ["0A", "0C"]
    assert store.get(CA_PREFIX + "0D").signer_serial == "ROOT"
    assert store.newest_change() == T0 + timedelta(hours=14)
    assert store.oldest_signing() == T0
    assert sorted(s for s, _ in store.changed_since(T0)) == ["0B", "0C"]
    assert sorted(r.serial for r in store.partition(0, 2)) == ["0A", "0C"]
    store.drop_signed_by(["OLD"])
    assert store.get("0C") is None


@pytest.mark.parametrize("make", STORES["mail"], ids=["memory", "sqlite"])
def test_mail_outbox_port(tmp_path: Path, make: Callable[[Path], Any]) -> None:
    outbox = make(tmp_path)
    mail = Mail(id="r.1", kind="pickup-link", recipient="anna@example.cz", language="cs",
                params={"user_id": "anna"}, next_attempt_at=T0)
    assert outbox.add([mail, mail], Tracking("portal", 1)) == 1
    assert outbox.add([mail], None) == 0
    assert [m.id for m in outbox.due(T0)] == ["r.1"]
    outbox.mark_failed("r.1", 1, T0 + timedelta(minutes=5), "refused", give_up=False)
    assert outbox.due(T0) == [] and outbox.all()[0].attempts == 1
    outbox.mark_sent("r.1", T0 + timedelta(minutes=5))
    assert outbox.all()[0].state == "sent" and outbox.due(T0 + timedelta(hours=1)) == []
