"""No OTP, password or private key in any stored event; CA keys encrypted at rest."""

from __future__ import annotations

from pathlib import Path

import psycopg

from adapters.entrypoints.demo import demo_system, run_story


def stored_bytes(database_url: str, data_dir: Path) -> bytes:
    if not database_url:
        return b"".join(p.read_bytes() for p in data_dir.glob("*.sqlite*"))
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT topic, state FROM portal_events UNION ALL SELECT topic, state FROM ca_events"
        ).fetchall()
    return b"".join(topic.encode() + bytes(state) for topic, state in rows)


def test_demo_secrets_never_reach_the_event_stores(database_url: str, tmp_path: Path) -> None:
    with demo_system(tmp_path, database_url) as (system, passphrase):
        secrets = run_story(system, passphrase)
    blob = stored_bytes(database_url, tmp_path)
    assert b"CsrSubmitted" in blob and b"CertificateIssued" in blob  # we scanned the real thing
    for otp in secrets.otps:
        assert otp.encode() not in blob
        assert otp.replace("-", "").encode() not in blob
    for password in secrets.revocation_passwords:
        assert password.encode() not in blob
    for key_pem in secrets.private_keys_pem:
        body = "".join(key_pem.strip().splitlines()[1:-1])
        assert body[:40].encode() not in blob
        assert b"PRIVATE KEY" not in blob
    assert secrets.key_passphrase.encode() not in blob
    for key_file in (tmp_path / "keys").glob("*.pem"):
        assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert key_file.stat().st_mode & 0o077 == 0
