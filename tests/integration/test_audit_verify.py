"""Tamper evidence: signed tree heads over the CA's log; `verify` names what was changed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.audit.tree_heads import checkpoint, verify
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
    checked = verify(system.ca, key.public_key(), published(system))
    size, heads, findings = checked.events, checked.heads, checked.findings
    assert findings == [] and heads == 2 and size > 12
    position = tamper(system, database_url)
    findings = verify(system.ca, key.public_key(), published(system)).findings
    assert findings, "tampering detected"
    assert findings[0].position == position, [str(f) for f in findings]
    system.close()


def test_a_head_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    system, _key = built(tmp_path, "")
    checked = verify(system.ca, ec.generate_private_key(ec.SECP256R1()).public_key())
    heads, findings = checked.heads, checked.findings
    assert heads == 2 and len(findings) == 2
    assert all(f.what.endswith("has a bad signature") for f in findings)
    system.close()


def test_verify_says_what_no_signed_head_covers_and_when_the_newest_was_signed(
        tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    from tests.support import PASSPHRASE

    system = make_system(tmp_path / "data")
    register(system)
    enroll(system)
    system.close()
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE}

    def cli(*args: str) -> dict[str, Any]:
        done = subprocess.run(["partner-ca", "audit", *args, "--app", "ca"], env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        # proofs are one indented JSON document; the others one object per log
        return dict(json.loads(done.stdout if args[0] == "prove" else
                               done.stdout.splitlines()[-1]))

    signed = cli("checkpoint", "--json")
    plain = subprocess.run(["partner-ca", "audit", "verify", "--app", "ca"], env=env,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert f"the newest valid head covers positions 1–{signed['tree_size']}, signed " \
        in plain.stdout and "UTC" in plain.stdout
    system = make_system(tmp_path / "data", initialise=False)
    enroll(system)  # events after the head
    size = system.ca.recorder.max_notification_id()
    system.close()
    found = cli("verify", "--json")
    assert found["intact"] and found["covered"] == signed["tree_size"]
    assert found["uncovered"] == size - signed["tree_size"] > 0
    assert found["covered_signed_at"] is not None
    head = json.loads((tmp_path / "data" / "audit" / "heads.jsonl").read_text().splitlines()[-1])
    proof = cli("prove", "1", "--json")
    assert proof["signed_at_ms"] == head["signed_at_ms"] is not None


def test_verify_before_any_checkpoint_says_nothing_is_covered(tmp_path: Path) -> None:
    system = make_system(tmp_path / "data")
    register(system)
    checked = verify(system.ca, ec.generate_private_key(ec.SECP256R1()).public_key())
    assert checked.findings == [] and checked.covered == 0
    assert checked.uncovered == checked.events > 0
    assert "no signed tree head covers any of it yet" in checked.coverage()
    system.close()


def test_the_signed_time_cannot_be_changed_in_a_copy_and_v1_heads_still_verify(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import adapters.audit.tree_heads

    system = make_system(tmp_path / "data")
    register(system)
    key = ec.generate_private_key(ec.SECP256R1())
    with monkeypatch.context() as old_format:  # a head signed before times were signed in
        old_format.setattr(adapters.audit.tree_heads, "milliseconds", lambda _: None)
        checkpoint(system.ca, key, published=published(system))
    enroll(system)
    checkpoint(system.ca, key, published=published(system))
    checked = verify(system.ca, key.public_key(), published(system))
    assert checked.findings == [] and checked.heads == 2 and checked.covered_signed_at
    lines = [json.loads(line) for line in published(system).read_text().splitlines()]
    assert lines[0]["signed_at_ms"] is None and lines[1]["signed_at_ms"] is not None
    lines[1]["signed_at_ms"] += 3_600_000  # claim it was signed an hour later
    copy = tmp_path / "copy.jsonl"
    copy.write_text("".join(json.dumps(line) + "\n" for line in lines))
    findings = [str(f) for f in verify(system.ca, key.public_key(), copy).findings]
    assert any("differs from its published copy" in f for f in findings), findings
    system.close()


def _authority_positions(system: Any) -> list[int]:
    return [n.id for n in system.ca.recorder.select_notifications(1, 100)
            if ":Authority." in n.topic]


def garble(system: Any, url: str) -> int:
    position = _authority_positions(system)[0]
    sql(system, url, [("UPDATE stored_events SET state = ? WHERE rowid = ?",
                       (b"\xff{not json", position))])
    return position


def delete_authority(system: Any, url: str) -> int:
    position = _authority_positions(system)[1]
    sql(system, url, [("DELETE FROM stored_events WHERE rowid = ?", (position,))])
    return position


def swap_authority(system: Any, url: str) -> int:
    first, second = _authority_positions(system)[:2]
    a, b = row(system, first), row(system, second)
    sql(system, url, [
        ("UPDATE stored_events SET state = ?, topic = ? WHERE rowid = ?",
         (b.state, b.topic, first)),
        ("UPDATE stored_events SET state = ?, topic = ? WHERE rowid = ?",
         (a.state, a.topic, second))])
    return first


def garble_a_head(system: Any, url: str) -> int:
    [position] = [n.id for n in system.ca.recorder.select_notifications(1, 1000)
                  if n.topic.endswith("TreeHeadSigned")][:1]
    sql(system, url, [("UPDATE stored_events SET state = ? WHERE rowid = ?",
                       (b'{"tree_size": "x"}', position))])
    return position


@pytest.mark.parametrize("tamper", [garble, delete_authority, swap_authority, garble_a_head])
def test_the_cli_names_tampering_of_any_aggregate_without_a_traceback(
        tmp_path: Path, database_url: str, tamper: Callable[[Any, str], int]) -> None:
    """Issue 26 items 15-16: `audit verify` rebuilt the CA application from the store it was
    verifying; a changed, deleted or swapped Authority event made it crash. It reads bytes
    and the pinned key only, names the position, and never advises signing over findings."""
    import json
    import os
    import subprocess

    from cryptography.hazmat.primitives import serialization

    system, key = built(tmp_path, database_url)
    pinned = tmp_path / "pinned.pub.pem"
    pinned.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    position = tamper(system, database_url)
    system.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_CA_")}
    env.update({"PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
                "PARTNER_CA_DATABASE_URL": database_url})
    done = subprocess.run(["partner-ca", "audit", "verify", "--app", "ca", "--key",
                           str(pinned), "--json"], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    errors = done.stderr.strip().splitlines()
    assert errors and all(line.startswith("error: ca: ") for line in errors), done.stderr
    assert any(f"position {position}:" in line for line in errors), (position, errors)
    said = json.loads(done.stdout.splitlines()[-1])
    assert not said["intact"] and said["findings"]
    plain = subprocess.run(["partner-ca", "audit", "verify", "--app", "ca", "--key",
                            str(pinned)], env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=120)
    assert "audit checkpoint" not in plain.stdout and "intact" not in plain.stdout


def test_the_cli_says_not_verified_when_no_head_covers_anything(tmp_path: Path) -> None:
    import os
    import subprocess

    from cryptography.hazmat.primitives import serialization

    system = make_system(tmp_path / "data")
    register(system)
    system.close()
    pinned = tmp_path / "pinned.pub.pem"
    pinned.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_CA_")}
    env["PARTNER_CA_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(["partner-ca", "audit", "verify", "--key", str(pinned)], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "intact" not in done.stdout and "not verified" in done.stdout
