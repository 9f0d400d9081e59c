"""A new user's first hour with `partner-ca`, through the real command (subprocesses, a pty
where a terminal matters): set-up problems are one line and exit 3, checked before any
secret is asked for; refused requests keep the OTP; results are never wrapped and have
--json."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import termios
import time
from pathlib import Path

import psycopg
import pytest

from tests.e2e.test_cli import PASSPHRASE, csr_file, issue_otp, request, run
from tests.support import kafka_env, until

USER = "P24-000123"


def one_line_setup_error(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", [["status", "--user", "x"], ["serve", "--role", "ocsp"],
                                     ["serve", "--role", "crl"], ["otp", "issue", "x",
                                     "--module", "EPAK", "--by", "a"], ["init"], ["crl"]])
def test_out_of_range_settings_are_one_line_naming_the_variable(
        tmp_path: Path, command: list[str]) -> None:
    env = {"PARTNER_CA_DATA_DIR": str(tmp_path), "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE,
           "PARTNER_CA_OCSP_VALIDITY_HOURS": "7"}
    one_line_setup_error(run(*command, env=env, check=None), "PARTNER_CA_OCSP_VALIDITY_HOURS",
                         "greater than or equal to 8")
    one_line_setup_error(run(*command, env={**env, "PARTNER_CA_OCSP_VALIDITY_HOURS": "24",
                                            "PARTNER_CA_LOG_LEVEL": "LOUD"}, check=None),
                         "PARTNER_CA_LOG_LEVEL")


def test_commands_before_init_say_so_first(tmp_path: Path) -> None:
    env = {"PARTNER_CA_DATA_DIR": str(tmp_path / "data"), "PARTNER_CA_KEY_PASSPHRASE": ""}
    for command in (["partner", "register", USER, "--email", "p@example.com", "--module",
                     "EPAK"], ["otp", "issue", USER, "--module", "EPAK", "--by", "admin"],
                    ["crl"], ["client", "request", "--user", USER, "--csr", "/dev/null"],
                    ["serve", "--role", "ocsp"], ["serve", "--role", "crl"],
                    ["serve", "--role", "portal"]):
        # no passphrase is set, so asking for one first would be a different error
        one_line_setup_error(run(*command, env=env, check=None), "not initialised")


def test_a_missing_database_is_named(postgres_url: str, tmp_path: Path) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/partner_ca_no_such_database"
    line = one_line_setup_error(run("status", "--user", USER, env={
        "PARTNER_CA_DATA_DIR": str(tmp_path), "PARTNER_CA_DATABASE_URL": url}, check=None),
        "partner_ca_no_such_database", "does not exist")
    assert "event store" in line


class Terminal:
    """`partner-ca` on a pseudo-terminal: what a person at a keyboard sees and types."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the command, on the terminal
            os.execvpe("partner-ca", ["partner-ca", *args], {**os.environ, **env})
        self.seen = b""
        self.matched = 0

    def expect(self, text: str, timeout: float = 60) -> None:
        """Wait until ``text`` is shown after what the last ``expect`` matched."""
        deadline = time.monotonic() + timeout
        while (found := self.seen.find(text.encode(), self.matched)) < 0:
            if time.monotonic() > deadline or not self._read(deadline):
                raise AssertionError(f"{text!r} not shown; the terminal shows {self.seen!r}")
        self.matched = found + len(text)

    def _read(self, deadline: float) -> bool:
        """More of what the program shows; False once it has ended (or at the deadline)."""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the program ended
                    return False
                self.seen += chunk
                return bool(chunk)
        return False

    def type_secret(self, line: str, timeout: float = 30) -> None:
        """Type at a hidden prompt once the program has turned echo off (getpass discards
        what was typed before)."""
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.fd)[3] & termios.ECHO:
            if time.monotonic() > deadline:
                raise AssertionError("the prompt never hid the input")
            time.sleep(0.01)
        os.write(self.fd, line.encode() + b"\r")

    def exit_code(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self._read(deadline):  # everything it printed, until it ends
            pass
        os.close(self.fd)
        for _ in range(100):
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(self.pid, 9)
        raise AssertionError(f"still running; it showed {self.seen!r}")


def test_init_asks_for_the_passphrase_twice_on_a_terminal(tmp_path: Path) -> None:
    env = {"PARTNER_CA_DATA_DIR": str(tmp_path / "data")}
    term = Terminal(["init"], env)
    term.expect("CA key passphrase")
    term.type_secret("first passphrase typed")
    term.expect("Repeat for confirmation")
    term.type_secret("first passphrase TYPO!")
    term.expect("do not match")
    term.expect("CA key passphrase")
    term.type_secret("the right passphrase")
    term.expect("Repeat for confirmation")
    term.type_secret("the right passphrase")
    assert term.exit_code() == 0, term.seen
    assert b"CA initialised" in term.seen
    ok = run("status", "--user", USER, env={**env, "PARTNER_CA_KEY_PASSPHRASE":
                                            "the right passphrase"}, check=None)
    assert "not initialised" not in ok.stderr
    crl = run("crl", env={**env, "PARTNER_CA_KEY_PASSPHRASE": "the right passphrase"})
    assert "CRL number 2" in crl.stdout  # init published number 1 at once


def test_crl_on_a_terminal_says_not_initialised_before_asking_for_the_passphrase(
        tmp_path: Path) -> None:
    term = Terminal(["crl"], {"PARTNER_CA_DATA_DIR": str(tmp_path / "data")})
    assert term.exit_code() == 3
    assert b"not initialised" in term.seen and b"passphrase" not in term.seen


@pytest.fixture
def installed(tmp_path: Path) -> dict[str, str]:
    env = {"PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE}
    run("init", env=env)
    run("partner", "register", USER, "--email", "p@example.com", "--module", "EPAK", env=env)
    return env


def test_a_refused_request_leaves_the_otp_usable(installed: dict[str, str],
                                                 tmp_path: Path) -> None:
    env = installed
    _key, csr = csr_file(tmp_path, "k1")
    otp = issue_otp(env)
    too_short = request(env, otp, csr, "short", "short")
    assert too_short.returncode == 1 and "revocation-password-too-short" in too_short.stderr
    differ = request(env, otp, csr, "password one", "password two")
    assert differ.returncode == 1 and "revocation-password-mismatch" in differ.stderr
    (tmp_path / "garbage.csr").write_text("not a CSR at all")
    bad = request(env, otp, tmp_path / "garbage.csr")
    assert bad.returncode == 1 and "csr" in bad.stderr.lower()
    _, weak = csr_file(tmp_path, "weak", "rsa1024")
    assert "key-size-not-allowed" in request(env, otp, weak).stderr
    wrong_key = request({**env, "PARTNER_CA_KEY_PASSPHRASE": "not the passphrase"}, otp, csr)
    one_line_setup_error(wrong_key, "passphrase")
    done = request(env, otp, csr)  # the same OTP, after five refusals
    assert done.returncode == 0, done.stderr
    assert "issued" in done.stdout or "ready" in done.stdout


def test_results_are_never_wrapped_and_every_result_has_json(installed: dict[str, str],
                                                             tmp_path: Path) -> None:
    env = installed
    key, csr = csr_file(tmp_path, "k1")
    otp = json.loads(run("otp", "issue", USER, "--module", "EPAK", "--by", "admin-epak",
                         "--json", env=env).stdout)
    assert otp["user_id"] == USER and otp["module"] == "EPAK" and otp["otp"]
    plain = request(env, otp["otp"], csr)
    line = next(line for line in plain.stdout.splitlines() if "serial" in line)
    serial = line.split("serial ")[1].strip()
    assert len(serial) == 32, plain.stdout  # a pipe is 80 columns wide to rich
    done = run("client", "pickup", line.split()[1].rstrip(":"), "--user", USER, "--out",
               str(tmp_path / "cert.pem"), "--json", env=env)
    assert json.loads(done.stdout)["serial"] == serial
    login = json.loads(run("client", "login", "--cert", str(tmp_path / "cert.pem"), "--key",
                           str(key), "--json", env=env).stdout)
    assert login == {"user_id": USER, "module": "EPAK", "serial": serial}
    crl = json.loads(run("crl", "--json", env=env).stdout)
    assert crl["crl_number"] == 2 and crl["revoked"] == 0  # init published number 1
    checkpoint = [json.loads(x) for x in run("audit", "checkpoint", "--json",
                                             env=env).stdout.splitlines()]
    assert {c["app"] for c in checkpoint} == {"ca", "portal"}
    verified = [json.loads(x) for x in run("audit", "verify", "--json",
                                           env=env).stdout.splitlines()]
    assert all(v["intact"] for v in verified)
    json.loads(run("audit", "prove", "1", "--json", env=env).stdout)
    json.loads(run("expire", "--json", env=env).stdout)
    json.loads(run("revoke", serial, "--reason", "superseded", "--operator", "ops",
                   "--json", env=env).stdout)
    replayed = json.loads(run("audit", "replay", "--json", env=env).stdout)
    assert replayed["differences"] == []


def test_serve_with_a_wrong_passphrase_refuses_to_start(installed: dict[str, str]) -> None:
    env = {**installed, "PARTNER_CA_KEY_PASSPHRASE": "not the right passphrase",
           "PARTNER_CA_PORTAL_LISTEN": "127.0.0.1:0", "PARTNER_CA_OCSP_LISTEN": "127.0.0.1:0",
           "PARTNER_CA_CRL_LISTEN": "127.0.0.1:0"}
    for role in ("portal", "ca", "all"):  # the roles that sign (ocsp and crl need no key)
        one_line_setup_error(run("serve", "--role", role, env=env, check=None), "passphrase")


def test_debug_log_level_shows_what_serve_publishes_and_applies(
        tmp_path: Path, postgres_url: str, kafka_bootstrap: str) -> None:
    """docs/operations.md: with PARTNER_CA_LOG_LEVEL=DEBUG each role logs what it publishes
    and applies."""
    import uuid

    from tests.e2e.test_kafka_processes import _database

    prefix = f"l{uuid.uuid4().hex[:10]}."
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE,
           "PARTNER_CA_DATABASE_URL": _database(postgres_url, "partner_ca_log_level"),
           **kafka_env(kafka_bootstrap, prefix),
           "PARTNER_CA_KAFKA_CLIENT_PREFIX": prefix.rstrip("."), "PARTNER_CA_KAFKA_PARTITIONS": "1",
           "PARTNER_CA_PORTAL_LISTEN": "", "PARTNER_CA_LOG_LEVEL": "DEBUG"}
    run("init", env=env)
    run("partner", "register", USER, "--email", "p@example.com", "--module", "EPAK", env=env)
    _key, csr = csr_file(tmp_path, "k1")
    otp = issue_otp(env)
    assert request(env, otp, csr).returncode == 0
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        serve = subprocess.Popen(["partner-ca", "serve", "--role", "all"], env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=sink)
    try:
        until(lambda: "relay ca: published" in log.read_text()
              and "inbox portal: applied" in log.read_text(), "DEBUG lines of relay and inbox")
        assert " DEBUG " in log.read_text() and " INFO " in log.read_text()
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    with psycopg.connect(env["PARTNER_CA_DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM ca_events").fetchone()[0] > 0


def test_a_serial_is_found_however_it_is_typed(installed: dict[str, str],
                                               tmp_path: Path) -> None:
    """`status 1a2b` used to miss where the HTTP /status padded: one normal form for all."""
    env = installed
    _key, csr = csr_file(tmp_path, "k1")
    done = json.loads(run("client", "request", "--user", USER,
                          "--csr", str(csr), "--json",
                          env={**env, "PARTNER_CA_REVOCATION_PASSWORD": "revocation pw 1",
                               "PARTNER_CA_OTP": issue_otp(env)}
                          ).stdout)
    serial = done["serial"]
    short = serial.lstrip("0").lower()
    typed = [short, "0x" + short, ":".join(serial[i:i + 2] for i in range(0, 32, 2)), serial]
    for text in typed:
        found = json.loads(run("status", text, "--json", env=env).stdout)
        assert found["serial"] == serial, text
    bad = run("status", "not-hex", env=env, check=None)
    assert bad.returncode == 2 and "serial-invalid" in bad.stderr
    revoked = json.loads(run("revoke", short, "--reason", "keyCompromise", "--operator", "ops",
                             "--json", env=env).stdout)
    assert revoked["serial"] == serial and revoked["changed"]
