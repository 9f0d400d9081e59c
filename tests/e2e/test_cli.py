"""The ``partner-ca`` command as a user runs it: the demo, and one-line errors with exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.client import softtoken
from adapters.entrypoints.cli import app

PASSPHRASE = "cli test passphrase"


def run(*args: str, env: dict[str, str] | None = None,
        check: int | None = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["partner-ca", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                          timeout=120)
    if check is not None:
        assert done.returncode == check, (done.returncode, done.stdout, done.stderr)
    return done


def test_demo_json_tells_the_whole_story_in_order() -> None:
    done = run("demo", "--json")
    events = [json.loads(line) for line in done.stdout.splitlines()]
    for e in events:
        assert {"type", "aggregate_id", "version", "timestamp"} <= set(e)
    types = [e["type"] for e in events]

    def after(name: str, start: int, **fields: str) -> int:
        for i in range(start, len(events)):
            if types[i] == name and all(events[i].get(k) == v for k, v in fields.items()):
                return i
        raise AssertionError(f"{name} {fields} not found after position {start}: {types}")

    i = after("OtpIssued", 0)
    i = after("OtpRedeemed", i)
    i = after("CsrSubmitted", i, kind="new")
    i = after("CertificateIssued", i)
    i = after("CertificatePickedUp", i)
    i = after("CsrSubmitted", i, kind="renewal")
    i = after("CertificateRevoked", i, reason="superseded")
    i = after("CertificateRevoked", i, reason="keyCompromise")
    after("CertificateExpired", i)
    timestamps = [e["timestamp"] for e in events]
    assert timestamps == sorted(timestamps)


def test_demo_prints_a_readable_timeline() -> None:
    done = run("demo")
    assert "CertificateIssued" in done.stdout and "CertificateExpired" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {"PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE}
    run("init", env=env)
    run("partner", "register", "P24-000123", "--email", "p@example.com", "--module", "EPAK",
        env=env)
    return env


def issue_otp(env: dict[str, str]) -> str:
    done = run("otp", "issue", "P24-000123", "--module", "EPAK", "--by", "admin-epak", env=env)
    match = re.search(r"([A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})", done.stdout)
    assert match, done.stdout
    return match.group(1)


def csr_file(tmp_path: Path, name: str, kind: str = "p256") -> tuple[Path, Path]:
    key = softtoken.new_key(kind)
    (tmp_path / f"{name}.key").write_text(softtoken.key_pem(key))
    (tmp_path / f"{name}.csr").write_text(softtoken.make_csr(key, "P24-000123"))
    return tmp_path / f"{name}.key", tmp_path / f"{name}.csr"


def refused(done: subprocess.CompletedProcess[str], code: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert f"[{code}]" in lines[0], lines[0]


def request(env: dict[str, str], otp: str, csr: Path, pw: str = "revocation pw 1",
            again: str | None = None) -> subprocess.CompletedProcess[str]:
    return run("client", "request", "--user", "P24-000123", "--csr", str(csr),
               env={**env, "PARTNER_CA_OTP": otp, "PARTNER_CA_REVOCATION_PASSWORD": pw,
                    "PARTNER_CA_REVOCATION_PASSWORD_AGAIN": again or pw}, check=None)


def data_files(env: dict[str, str]) -> dict[str, int]:
    data = Path(env["PARTNER_CA_DATA_DIR"])
    return {p.name: p.stat().st_size for p in data.glob("*.sqlite*")}


def test_cli_refusals_are_one_line_errors_with_exit_code_1(cli_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    env = cli_env
    key, csr = csr_file(tmp_path, "k1")
    otp = issue_otp(env)
    refused(request(env, otp, csr, "password one", "password two"),
            "revocation-password-mismatch")
    # bad signature: flip a byte of the CSR signature
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = bytearray(x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(
        serialization.Encoding.DER))
    der[-5] ^= 1
    bad = tmp_path / "bad.csr"
    bad.write_bytes(x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM))
    otp = issue_otp(env)
    refused(request(env, otp, bad), "csr-bad-signature")
    _, weak = csr_file(tmp_path, "weak", "rsa1024")
    otp = issue_otp(env)
    refused(request(env, otp, weak), "key-size-not-allowed")

    otp = issue_otp(env)
    done = request(env, otp, csr)
    assert done.returncode == 0, done.stderr
    request_id = re.search(r"request ([0-9a-f-]{36})", done.stdout).group(1)  # type: ignore[union-attr]
    refused(request(env, otp, csr), "otp-used")
    run("client", "pickup", request_id, "--user", "P24-000123", "--out",
        str(tmp_path / "cert.pem"), "--chain-out", str(tmp_path / "chain.pem"), env=env)
    run("client", "login", "--cert", str(tmp_path / "cert.pem"), "--key", str(key), env=env)

    # an expired OTP (the clock moved 22 days on)
    otp = issue_otp(env)
    later = {**env, "PARTNER_CA_NOW": "2099-01-01T00:00:00Z"}
    refused(request(later, otp, csr), "otp-expired")

    # renewal of an expired certificate
    _key2, csr2 = csr_file(tmp_path, "k2")
    refused(run("client", "renew", "--cert", str(tmp_path / "cert.pem"), "--key", str(key),
                "--csr", str(csr2), env={**later, "PARTNER_CA_REVOCATION_PASSWORD": "pw pw pw 1"},
                check=None), "certificate-expired")

    # renewal of a revoked certificate
    serial = run("client", "login", "--cert", str(tmp_path / "cert.pem"), "--key", str(key),
                 env=env).stdout.split()[-1]
    run("revoke", serial, "--reason", "keyCompromise", "--operator", "ops-anna", env=env)
    before = data_files(env)
    refused(run("client", "renew", "--cert", str(tmp_path / "cert.pem"), "--key", str(key),
                "--csr", str(csr2), env={**env, "PARTNER_CA_REVOCATION_PASSWORD": "pw pw pw 1"},
                check=None), "certificate-revoked")
    assert data_files(env) == before
    status = json.loads(run("status", serial, "--json", env=env).stdout)
    assert (status["status"], status["reason"], status["changed_by"]) == (
        "revoked", "keyCompromise", "operator:ops-anna")
    mine = [json.loads(line) for line in
            run("status", "--user", "P24-000123", "--json", env=env).stdout.splitlines()]
    assert [r["serial"] for r in mine] == [serial]
    then = json.loads(run("status", serial, "--at", "2000-01-01T00:00:00Z", "--json",
                          env=env).stdout)
    assert then["status"] == "unknown"
    now = json.loads(run("status", serial, "--at", "2999-01-01T00:00:00+00:00", "--json",
                         env=env).stdout)
    assert (now["status"], now["decided_by"]) == ("revoked", "CertificateRevoked")
    done = run("crl", "--out", str(tmp_path / "issuing.crl"), env=env)
    assert "CRL number 2: 1 revoked" in done.stdout  # init published number 1
    from cryptography import x509 as _x509

    crl = _x509.load_der_x509_crl((tmp_path / "issuing.crl").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def test_cli_setup_problems_exit_3(tmp_path: Path) -> None:
    env = {"PARTNER_CA_DATA_DIR": str(tmp_path / "none"), "PARTNER_CA_KEY_PASSPHRASE": ""}
    done = run("init", env=env, check=3)
    assert "PARTNER_CA_KEY_PASSPHRASE" in done.stderr
    done = run("status", "00AA", env=env, check=3)
    assert "ca-not-initialised" in done.stderr
    env["PARTNER_CA_KEY_PASSPHRASE"] = PASSPHRASE
    done = run("revoke", "00AA", "--reason", "keyCompromise", "--operator", "x", env=env,
               check=3)
    assert "Traceback" not in done.stderr and "ca-not-initialised" in done.stderr


@pytest.mark.parametrize("command", [
    [], ["init"], ["demo"], ["otp"], ["otp", "issue"], ["partner", "register"], ["status"],
    ["revoke"], ["expire"], ["chain"], ["migrate"], ["serve"], ["crl"], ["client"],
    ["client", "request"], ["client", "pickup"],
    ["client", "login"], ["client", "renew"], ["client", "revoke"], ["client", "pickup-link"],
    ["ops"], ["ops", "token"], ["token"], ["token", "list"], ["token", "objects"],
    ["token", "keygen"], ["token", "csr"], ["token", "import"], ["token", "show"],
    ["token", "change-pin"], ["token", "export-chain"], ["audit"], ["audit", "checkpoint"],
    ["audit", "verify"], ["audit", "history"], ["audit", "at"], ["audit", "replay"],
])
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_ops_token_is_shown_once_and_stored_as_a_hash(tmp_path: Path) -> None:
    env = {"PARTNER_CA_DATA_DIR": str(tmp_path / "data")}
    done = run("ops", "token", "--name", "anna", "--role", "admin:EPAK", env=env)
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("pca_")
    stored = (tmp_path / "data" / "ops-tokens.json").read_text()
    assert token not in stored and "admin:EPAK" in stored
    assert oct((tmp_path / "data" / "ops-tokens.json").stat().st_mode & 0o777) == "0o600"
    refused = run("ops", "token", "--name", "x", "--role", "king", env=env, check=1)
    assert "role-unknown" in refused.stderr and "Traceback" not in refused.stderr


def test_audit_checkpoint_and_verify_from_the_command_line(cli_env: dict[str, str]) -> None:
    issue_otp(cli_env)
    done = run("audit", "checkpoint", env=cli_env)
    assert "ca: signed tree head over" in done.stdout and "portal: signed tree head" in done.stdout
    assert "intact" in run("audit", "verify", env=cli_env).stdout
    import sqlite3

    db = sqlite3.connect(Path(cli_env["PARTNER_CA_DATA_DIR"]) / "portal.sqlite")
    with db:
        db.execute("UPDATE stored_events SET topic = topic || ' ' WHERE rowid = 2")
    db.close()
    refused = run("audit", "verify", env=cli_env, check=1)
    assert "error: portal: position 2: differs from the signed tree head" in refused.stderr
    replayed = run("audit", "replay", env=cli_env)
    assert "0 difference(s)" in replayed.stdout


def test_audit_history_and_at_for_a_certificate(tmp_path: Path) -> None:
    """`audit at` before issuance, between issuance and revocation, after revocation and
    after expiry; `audit history` of the user and of the certificate."""
    from datetime import UTC, datetime, timedelta

    from tests.support import enroll, make_system, register

    env = {"PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": "test passphrase for keys"}
    system = make_system(tmp_path / "data")
    register(system)
    me = enroll(system)
    issued_at = system.ca.certificate(me.picked.serial).modified_on
    system.clock.advance(timedelta(days=10))  # type: ignore[attr-defined]
    system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops-anna")
    system.ca.crls.publish_crl([], 0)
    other = enroll(system)
    system.clock.advance(timedelta(days=400))  # type: ignore[attr-defined]
    system.ca.expire_due()
    system.close()

    def at(moment: datetime, serial: str) -> dict[str, Any]:
        return json.loads(run("audit", "at", moment.isoformat(), "--serial", serial, "--json",
                              env=env).stdout)

    assert at(issued_at - timedelta(seconds=1), me.picked.serial)["status"] == "unknown"
    between = at(issued_at + timedelta(days=1), me.picked.serial)
    assert (between["status"], between["decided_by"]) == ("good", "CertificateIssued")
    after = at(issued_at + timedelta(days=11), me.picked.serial)
    assert (after["status"], after["reason"], after["crl_number"]) == (
        "revoked", "keyCompromise", 1)
    expired = at(datetime(2099, 1, 1, tzinfo=UTC), other.picked.serial)
    assert (expired["status"], expired["decided_by"]) == ("expired", "CertificateExpired")
    mine = [json.loads(line) for line in run("audit", "history", "--user", "P24-000123",
                                             "--json", env=env).stdout.splitlines()]
    kinds = [e["type"] for e in mine]
    for kind in ("PartnerRegistered", "OtpIssued", "OtpRedeemed", "CsrSubmitted",
                 "CertificateIssued", "CertificateReady", "CertificatePickedUp",
                 "CertificateRevoked", "CertificateExpired"):
        assert kind in kinds, kind
    cert = [json.loads(line) for line in run("audit", "history", "--serial", me.picked.serial,
                                             "--json", env=env).stdout.splitlines()]
    assert {e["type"] for e in cert} >= {"CertificateIssued", "CertificateRevoked",
                                         "SigningRequestAccepted", "CsrSubmitted"}
    assert all(e.get("serial", me.picked.serial) == me.picked.serial for e in cert)


@pytest.mark.parametrize("args", [
    ["client", "request", "--user", "P24-000123", "--otp", "AAAA-BBBB-CCCC-DDDD", "--csr", "x"],
    ["client", "pickup", "00000000-0000-0000-0000-000000000000", "--out", "x",
     "--link-token", "secret-link-token"],
    ["client", "pickup-link", "https://portal.example/pickup/1?token=secret", "--token", "T"],
])
def test_no_secret_is_taken_from_the_command_line(args: list[str], tmp_path: Path) -> None:
    """Issue 26 item 8: argv is readable by every local user; such a call is refused before
    anything is read or used, naming the variable to use."""
    done = run(*args, env={"PARTNER_CA_DATA_DIR": str(tmp_path)}, check=None)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "not taken on the command line" in done.stderr
    assert "PARTNER_CA_" in done.stderr
