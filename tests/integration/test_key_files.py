"""Key files and the data directory as another local user would find them: CA keys are
PKCS#8 under PBKDF2-HMAC-SHA256 at 600,000 rounds (openssl reads them), everything private."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.audit.tree_heads import audit_key
from adapters.ca.keystore import KDF_ITERATIONS, FileKeyStore
from tests.support import PASSPHRASE, make_system


def test_key_files_use_the_owasp_iteration_count_and_openssl_reads_them(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path / "keys", PASSPHRASE.encode())
    store.save("issuing", ec.generate_private_key(ec.SECP256R1()))
    path = tmp_path / "keys" / "issuing.key.pem"
    parsed = subprocess.run(["openssl", "asn1parse", "-in", str(path)], capture_output=True,
                            text=True, check=True).stdout
    assert "PBES2" in parsed and "PBKDF2" in parsed and "hmacWithSHA256" in parsed
    integers = [int(m, 16) for m in re.findall(r"INTEGER\s+:([0-9A-F]+)", parsed)]
    assert "aes-256-cbc" in parsed and KDF_ITERATIONS in integers, parsed
    read = subprocess.run(["openssl", "pkey", "-in", str(path), "-noout", "-passin",
                           f"pass:{PASSPHRASE}"], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    wrong = subprocess.run(["openssl", "pkey", "-in", str(path), "-noout", "-passin",
                            "pass:not the passphrase"], capture_output=True, text=True)
    assert wrong.returncode != 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.load("issuing").public_key() is not None


def test_the_data_directory_and_stores_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        system = make_system(tmp_path / "data")
        system.close()
    finally:
        os.umask(old)
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    stores = list(data.glob("*.sqlite*"))
    assert stores
    for store in stores:
        assert stat.S_IMODE(store.stat().st_mode) == 0o600, store


def test_two_threads_making_the_audit_key_at_once_both_get_the_one_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both logs' checkpoint threads make the audit key on first use (the CI failure: they
    shared one temp file name, and the loser's rename found it gone — FileNotFoundError)."""
    store = FileKeyStore(tmp_path / "keys", PASSPHRASE.encode(), iterations=1_000)
    link = os.link
    raced: list[bool] = []

    def racing_link(source: Any, target: Any) -> None:
        if not raced:  # once: the other thread makes and saves the key between our write and link
            raced.append(True)
            other = threading.Thread(target=audit_key, args=(store, tmp_path / "audit.pub.pem"))
            other.start()
            other.join()
        link(source, target)

    monkeypatch.setattr(os, "link", racing_link)
    key = audit_key(store, tmp_path / "audit.pub.pem")
    assert raced
    winner = store.load("audit")
    assert key.private_numbers() == winner.private_numbers()  # type: ignore[union-attr]
    public = serialization.load_pem_public_key((tmp_path / "audit.pub.pem").read_bytes())
    assert public == winner.public_key()
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["audit.key.pem"]
