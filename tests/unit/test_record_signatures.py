"""Record signatures and the service hierarchy without a broker: key rotation with an
overlap, expiry, strangers' certificates, and the CLI that writes the credentials."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.transport.kafka import service_pki
from adapters.transport.kafka.security import (
    KafkaCredentialsError,
    UnauthenticatedRecord,
    role_credentials,
)
from ca_core.messages import REQUESTS

TOPIC = "p.requests"
RECORD = (b"key-1", [("ce_id", b"1"), ("ce_type", b"cz.partner-ca.X.v1")], b'{"a": 1}')


def _signed(directory: Path, role: str = "portal") -> list[tuple[str, bytes]]:
    key, headers, value = RECORD
    return role_credentials(directory, role, signs=True).signer().sign(TOPIC, key, headers,
                                                                       value)


def test_rotation_accepts_old_and_new_keys_during_the_overlap(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    service_pki.generate(tmp_path, signing_days=30, now=now)
    old = _signed(tmp_path)
    new_cert = service_pki.rotate_signing_key(tmp_path, "portal", signing_days=90,
                                              now=now + timedelta(days=20))
    new = _signed(tmp_path)
    assert dict(old)["ce_signer"] != dict(new)["ce_signer"]
    verifier = role_credentials(tmp_path, "ca").verifier()  # its peers.pem has both now
    key, _, value = RECORD
    for headers in (old, new):
        verifier.verify(REQUESTS, TOPIC, key, headers, value, now=now + timedelta(days=21))
    after_overlap = now + timedelta(days=31)
    with pytest.raises(UnauthenticatedRecord, match="not valid now"):
        verifier.verify(REQUESTS, TOPIC, key, old, value, now=after_overlap)
    verifier.verify(REQUESTS, TOPIC, key, new, value, now=after_overlap)
    assert new_cert.not_valid_after_utc > after_overlap


def test_a_peer_certificate_from_another_hierarchy_is_refused(tmp_path: Path) -> None:
    service_pki.generate(tmp_path / "ours")
    service_pki.generate(tmp_path / "theirs")
    ca = tmp_path / "ours" / "ca"
    (ca / "peers.pem").write_bytes((tmp_path / "theirs" / "portal" / "signing.crt").read_bytes())
    with pytest.raises(KafkaCredentialsError, match="not issued by the service CA"):
        role_credentials(tmp_path / "ours", "ca").verifier()


def test_missing_credentials_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(KafkaCredentialsError, match="PARTNER_CA_KAFKA_CREDENTIALS"):
        role_credentials(None, "ca")
    service_pki.generate(tmp_path)
    (tmp_path / "ca" / "signing.key").unlink()
    with pytest.raises(KafkaCredentialsError, match=r"signing\.key is missing"):
        role_credentials(tmp_path, "ca", signs=True)


def test_secrets_are_private_files(tmp_path: Path) -> None:
    service_pki.generate(tmp_path)
    for secret in ("issuer/service-ca.key", "broker/keystore.pem", "ca/tls.key",
                   "portal/signing.key"):
        assert (tmp_path / secret).stat().st_mode & 0o077 == 0, secret


def test_the_cli_writes_credentials_once_and_adds_a_reader(tmp_path: Path) -> None:
    out = tmp_path / "creds"
    done = subprocess.run(["partner-ca", "kafka", "credentials", str(out), "--json"],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["directory"] == str(out)
    again = subprocess.run(["partner-ca", "kafka", "credentials", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    added = subprocess.run(["partner-ca", "kafka", "add-reader", str(out), "billing", "--json"],
                           capture_output=True, text=True, check=True)
    assert json.loads(added.stdout)["principal"] == "User:billing"
    assert (out / "billing" / "peers.pem").read_bytes() == (out / "reader" / "peers.pem").read_bytes()


def test_a_kafka_role_without_credentials_stops_at_once(tmp_path: Path) -> None:
    """A one-line set-up error, exit 3, before anything runs (the broker is never asked)."""
    env = {"PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    done = subprocess.run(["partner-ca", "serve", "--role", "portal-relay"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "PARTNER_CA_KAFKA_CREDENTIALS" in done.stderr
    assert done.stderr.count("\n") == 1
