"""Tamper evidence: signed tree heads over the CA's log; `verify` names what was changed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.audit import checkpoint, verify
from tests.support import enroll, make_system, register

Tamper = Callable[[Any, str], None]


def built(tmp_path: Path, database_url: str) -> tuple[Any, ec.EllipticCurvePrivateKey]:
    system = make_system(tmp_path / "data", database_url)
    register(system)
    key = ec.generate_private_key(ec.SECP256R1())
    enroll(system)
    checkpoint(system.ca, key, published=published(system))
    enroll(system)
    enroll(system)
    checkpoint(system.ca, key, published=published(system))
    return system, key


def published(system: Any) -> Path:
    """The copy of the heads outside the database (on Kafka and elsewhere in production)."""
    return Path(system.settings.data_dir) / "audit" / "heads.jsonl"


def sql(system: Any, database_url: str, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    if database_url:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for statement, args in statements:
                conn.execute(statement.replace("?", "%s").replace("rowid", "notification_id")
                             .replace("stored_events", "ca_events"), args)
    else:
        db = sqlite3.connect(Path(system.settings.data_dir) / "ca.sqlite")
        with db:
            for statement, args in statements:
                db.execute(statement, args)
        db.close()


def row(system: Any, position: int) -> Any:
    [found] = system.ca.recorder.select_notifications(position, 1)
    return found


def change_a_byte(system: Any, url: str) -> int:
    stored = row(system, 5)
    changed = bytearray(stored.state)
    changed[len(changed) // 2] ^= 1
    sql(system, url, [("UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(changed), 5))])
    return 5


def delete_a_row(system: Any, url: str) -> int:
    sql(system, url, [("DELETE FROM stored_events WHERE rowid = ?", (7,))])
    return 7


def swap_two_rows(system: Any, url: str) -> int:
    a, b = row(system, 3), row(system, 4)
    sql(system, url, [
        ("UPDATE stored_events SET state = ?, topic = ? WHERE rowid = ?", (b.state, b.topic, 3)),
        ("UPDATE stored_events SET state = ?, topic = ? WHERE rowid = ?", (a.state, a.topic, 4))])
    return 3


def truncate_the_tail(system: Any, url: str) -> int:
    sql(system, url, [("DELETE FROM stored_events WHERE rowid > ?", (10,))])
    return 11


@pytest.mark.parametrize("tamper", [change_a_byte, delete_a_row, swap_two_rows,
                                    truncate_the_tail])
def test_verify_names_the_position_of_each_kind_of_tampering(
        tmp_path: Path, database_url: str, tamper: Callable[[Any, str], int]) -> None:
    system, key = built(tmp_path, database_url)
    size, heads, findings = verify(system.ca, key.public_key(), published(system))
    assert findings == [] and heads == 2 and size > 12
    position = tamper(system, database_url)
    _, _, findings = verify(system.ca, key.public_key(), published(system))
    assert findings, "tampering detected"
    assert findings[0].position == position, [str(f) for f in findings]
    system.close()


def test_a_head_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    system, _key = built(tmp_path, "")
    _, heads, findings = verify(system.ca, ec.generate_private_key(ec.SECP256R1()).public_key())
    assert heads == 2 and len(findings) == 2
    assert all(f.what.endswith("has a bad signature") for f in findings)
    system.close()
