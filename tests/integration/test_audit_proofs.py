"""Inclusion and consistency proofs from the CLI, checked by a verifier written here from
docs/audit.md and RFC 9162 (not our merkle module), the head signatures by `openssl dgst`;
signed heads published on Kafka and used by `audit verify` as the copy outside the database."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from adapters.audit.tree_heads import checkpoint, verify
from adapters.entrypoints.cli import app
from adapters.transport.kafka.heads import fetch_heads, write_heads
from adapters.transport.kafka.security import role_credentials
from tests.conftest import reset_postgres
from tests.support import KAFKA_CREDENTIALS, PASSPHRASE, enroll, make_system, register


# -- an independent verifier, from the documentation --------------------------------------
def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def check_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def check_consistency(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2."""
    if m == n:
        return old == new and not proof
    if (m & (m - 1)) == 0:
        proof = [old, *proof]
    fn, sn = m - 1, n - 1
    while fn % 2 == 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old and sr == new


def signed_bytes(application: str, head: dict[str, Any]) -> bytes:
    """docs/audit.md's signed bytes of a head (v2: with its signing time), built here."""
    name = application.encode()
    return (b"partner-ca/tree-head/v2" + struct.pack(">I", len(name)) + name
            + struct.pack(">QQQ", head["tree_size"], head["previous_size"], head["signed_at_ms"])
            + bytes.fromhex(head["root_hash"]) + bytes.fromhex(head["leaf_prefixes_sha256"]))


def openssl_verifies(tmp: Path, public_pem: Path, data: bytes, signature_hex: str) -> bool:
    (tmp / "signed.bin").write_bytes(data)
    (tmp / "signature.der").write_bytes(bytes.fromhex(signature_hex))
    done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(public_pem),
                           "-signature", str(tmp / "signature.der"), str(tmp / "signed.bin")],
                          capture_output=True, text=True)
    return done.returncode == 0 and "Verified OK" in done.stdout


def test_cli_proofs_check_out_independently(tmp_path: Path) -> None:
    system = make_system(tmp_path / "data")
    register(system)
    enroll(system)
    env = {"PARTNER_CA_DATA_DIR": str(tmp_path / "data"), "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE}
    runner = CliRunner()

    def cli(*args: str) -> Any:
        done = runner.invoke(app, ["audit", *args], env=env)
        assert done.exit_code == 0, done.output
        return done.output

    signed = cli("checkpoint", "--app", "ca")
    first = int(signed.split("signed tree head over ")[1].split()[0])
    enroll(system)
    cli("checkpoint", "--app", "ca")
    public = tmp_path / "data" / "keys" / "audit.pub.pem"

    for position in (1, 3, first):
        proof = json.loads(cli("prove", str(position), "--app", "ca", "--size", str(first)))
        leaf = hashlib.sha256(b"\x00" + bytes.fromhex(proof["leaf_data"])).digest()
        assert leaf.hex() == proof["leaf_hash"]
        assert struct.unpack(">Q", bytes.fromhex(proof["leaf_data"])[24:32])[0] == position
        assert check_inclusion(position - 1, proof["tree_size"], leaf,
                               [bytes.fromhex(h) for h in proof["audit_path"]],
                               bytes.fromhex(proof["root_hash"]))
        assert openssl_verifies(tmp_path, public, signed_bytes("ca", proof), proof["signature"])

    latest = json.loads(cli("prove", "2", "--app", "ca"))
    assert latest["tree_size"] > first
    consistency = json.loads(cli("consistency", "--app", "ca", "--from", str(first)))
    old, new = consistency["old"], consistency["new"]
    assert (old["tree_size"], new["tree_size"]) == (first, latest["tree_size"])
    assert check_consistency(first, new["tree_size"], bytes.fromhex(old["root_hash"]),
                             bytes.fromhex(new["root_hash"]),
                             [bytes.fromhex(h) for h in consistency["proof"]])
    assert openssl_verifies(tmp_path, public, signed_bytes("ca", new), new["signature"])
    # a head that does not exist is a clear usage error
    missing = runner.invoke(app, ["audit", "prove", "1", "--size", "1000000"], env=env)
    assert missing.exit_code == 2 and "no signed tree head of size 1000000" in missing.output
    system.close()


def test_heads_go_out_on_kafka_and_verify_checks_the_store_against_them(
        tmp_path: Path, postgres_url: str, kafka_bootstrap: str) -> None:
    reset_postgres(postgres_url)
    prefix = f"t{uuid.uuid4().hex[:12]}."
    system = make_system(tmp_path / "data", postgres_url, kafka_bootstrap=kafka_bootstrap,
                         kafka_prefix=prefix)
    register(system)
    enroll(system)
    key = ec.generate_private_key(ec.SECP256R1())
    checkpoint(system.ca, key)
    enroll(system)
    checkpoint(system.ca, key)
    checkpoint(system.portal, key)
    system.pump()  # the relays publish the heads like any other public event
    heads = fetch_heads(kafka_bootstrap, prefix, role_credentials(KAFKA_CREDENTIALS, "reader"))
    assert [h["application"] for h in heads] == ["ca", "ca", "portal"]
    copy = tmp_path / "kafka-heads.jsonl"
    write_heads(heads, copy)
    for application in (system.ca, system.portal):
        checked = verify(application, key.public_key(), [copy])
        count, findings = checked.heads, checked.findings
        assert findings == [] and count == (2 if application is system.ca else 1)
    # someone with write access to the database drops the CA's newest head
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DELETE FROM ca_events WHERE notification_id = (SELECT max(notification_id) "
                     "FROM ca_events WHERE topic LIKE '%TreeHeadSigned')")
    findings = verify(system.ca, key.public_key(), [copy]).findings
    assert any("missing from the log (it is in the published copy)" in f.what
               for f in findings), [str(f) for f in findings]
    system.close()
