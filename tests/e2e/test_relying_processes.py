"""`partner-ca serve --role ocsp` and `--role crl` as processes: a revocation by `partner-ca revoke`
reaches `openssl ocsp` and the CRL at the distribution point without anyone calling our code."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from tests.conftest import reset_postgres
from tests.support import (
    PASSPHRASE,
    Enrolled,
    check_slow_clients_dropped,
    enroll,
    listener,
    make_system,
    port_of,
    register,
    until,
)

OCSP_KEY_PASSPHRASE = "delegated ocsp key passphrase"
#: the listeners' header and body deadline in these tests
SLOW_SECONDS = 2.0


@dataclass
class Processes:
    ca_env: dict[str, str]  # the CA role's: its key passphrase and key directory
    relying_env: dict[str, str]  # what the OCSP and CRL roles get: no CA secret at all
    ocsp_url: str
    crl_url: str
    pids: dict[str, int]
    me: Enrolled


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """`serve --role ca` (the embedded CA role: it signs what relying parties are served),
    `serve --role ocsp` and `serve --role crl` without the CA passphrase and with the CA keys
    kept in a directory of the CA role's own."""
    ca_keys = tmp_path / "ca-keys"
    system = make_system(tmp_path / "data", key_dir=ca_keys)  # SQLite files shared with serve
    register(system)
    me = enroll(system)
    system.close()
    sockets = {"ocsp": listener(), "crl": listener()}  # handed over: no port is guessed
    ocsp_port, crl_port = port_of(sockets["ocsp"]), port_of(sockets["crl"])
    base = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_CA_KEY")}
    relying = {**base, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
               "PARTNER_CA_OCSP_KEY_PASSPHRASE": OCSP_KEY_PASSPHRASE,
               "PARTNER_CA_OCSP_LISTEN": f"fd:{sockets['ocsp'].fileno()}",
               "PARTNER_CA_CRL_LISTEN": f"fd:{sockets['crl'].fileno()}",
               "PARTNER_CA_CRL_DELAY_SECONDS": "1", "PARTNER_CA_RELYING_POLL_SECONDS": "0.2",
               "PARTNER_CA_HTTP_HEADER_SECONDS": str(SLOW_SECONDS),
               "PARTNER_CA_HTTP_BODY_SECONDS": str(SLOW_SECONDS)}
    ca_env = {**relying, "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE,
              "PARTNER_CA_KEY_DIR": str(ca_keys), "PARTNER_CA_PORTAL_LISTEN": ""}
    started = {role: subprocess.Popen(
        ["partner-ca", "serve", "--role", role], env=ca_env if role == "ca" else relying,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=(tmp_path / f"{role}.log").open("w"),
        pass_fds=(sockets[role].fileno(),) if role in sockets else ())
        for role in ("ca", "ocsp", "crl")}
    for sock in sockets.values():
        sock.close()  # the servers hold them now
    try:
        # up before any test stops them: the CRL role starts itself again without the OCSP
        # key passphrase (not its secret), and a SIGTERM before that is done ends it hard
        until(lambda: _up(f"http://127.0.0.1:{ocsp_port}/ocsp/")
              and _up(f"http://127.0.0.1:{crl_port}/ca/issuing.cer"), "both servers")
        yield Processes(ca_env, relying, f"http://127.0.0.1:{ocsp_port}",
                        f"http://127.0.0.1:{crl_port}",
                        {role: proc.pid for role, proc in started.items()}, me)
        for proc in started.values():
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=30) for proc in started.values()] == [0, 0, 0], \
            "clean exit on SIGTERM"
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.kill()
        for role in started:  # shown by pytest when the test failed
            print(f"--- serve --role {role}:\n{(tmp_path / f'{role}.log').read_text()}")


def _up(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError:
        return False
    return True


def test_revocation_by_cli_reaches_openssl_ocsp_and_the_crl(
        tmp_path: Path, processes: Processes) -> None:
    env, ocsp_url, crl_url = processes.ca_env, processes.ocsp_url, processes.crl_url
    me = processes.me
    system = make_system(tmp_path / "data", initialise=False, key_dir=tmp_path / "ca-keys")
    authority = system.ca.authority()
    system.close()
    (tmp_path / "issuing.pem").write_text(authority.issuing_certificate_pem)
    (tmp_path / "root.pem").write_text(authority.root_certificate_pem)
    (tmp_path / "chain.pem").write_text(authority.issuing_certificate_pem
                                        + authority.root_certificate_pem)
    (tmp_path / "leaf.pem").write_text(me.picked.certificate_pem)
    # what the relying-party processes hold: no CA passphrase, no CA key file where they look
    for role in ("ocsp", "crl"):
        environ = Path(f"/proc/{processes.pids[role]}/environ").read_bytes().split(b"\0")
        assert not any(v.startswith(b"PARTNER_CA_KEY_PASSPHRASE=") for v in environ), role
    assert not list((tmp_path / "data").glob("keys/*.key.pem"))
    assert sorted(p.name for p in (tmp_path / "ca-keys").glob("*.key.pem")
                  if p.name != "audit.key.pem") == [  # the CA role's tree-head key may join
        "issuing.key.pem", "root.key.pem"]
    until(lambda: _up(ocsp_url + "/ocsp/") and _up(crl_url + "/ca/issuing.cer"), "both servers")

    def openssl_ocsp() -> str:
        done = subprocess.run(
            ["openssl", "ocsp", "-issuer", str(tmp_path / "issuing.pem"), "-cert",
             str(tmp_path / "leaf.pem"), "-CAfile", str(tmp_path / "chain.pem"), "-url",
             f"{ocsp_url}/ocsp", "-no_nonce"], capture_output=True, text=True)
        return done.stdout + done.stderr

    def crl_revokes() -> bool:
        (tmp_path / "crl.der").write_bytes(httpx.get(f"{crl_url}/crl/issuing.crl").content)
        done = subprocess.run(
            ["openssl", "verify", "-crl_check", "-CRLfile", str(tmp_path / "crl.der"), "-CAfile",
             str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "issuing.pem"),
             str(tmp_path / "leaf.pem")], capture_output=True, text=True)
        return done.returncode != 0 and "revoked" in done.stdout + done.stderr

    until(lambda: "leaf.pem: good" in openssl_ocsp(), "OCSP good")
    until(lambda: httpx.get(f"{crl_url}/crl/issuing.crl").status_code == 200, "first CRL")
    assert not crl_revokes()
    done = subprocess.run(["partner-ca", "revoke", me.picked.serial, "--reason", "keyCompromise",
                           "--operator", "ops-anna"], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    until(lambda: "leaf.pem: revoked" in openssl_ocsp(), "OCSP revoked", timeout=10)
    # each of the 2 workers drops its cached answer at its next look at the store (every
    # 0.2 s here), so for a moment one may still say "good": wait until all agree

    def every_worker_says_revoked() -> bool:
        answers = [openssl_ocsp() for _ in range(4)]
        return all("leaf.pem: revoked" in a and "Reason: keyCompromise" in a for a in answers)

    until(every_worker_says_revoked, "every OCSP worker answering revoked", timeout=10)
    until(crl_revokes, "the CRL lists the revocation", timeout=10)
    crl = x509.load_der_x509_crl((tmp_path / "crl.der").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(me.picked.serial, 16)) is not None


def test_a_nonce_is_echoed_by_the_ocsp_role_with_only_the_delegated_key(
        tmp_path: Path, processes: Processes) -> None:
    """openssl ocsp sends a nonce by default: the answer echoes it, signed by the delegated
    signer whose key the OCSP role opened with its own passphrase."""
    me = processes.me
    system = make_system(tmp_path / "data", initialise=False, key_dir=tmp_path / "ca-keys")
    authority = system.ca.authority()
    system.close()
    (tmp_path / "issuing.pem").write_text(authority.issuing_certificate_pem)
    (tmp_path / "chain.pem").write_text(authority.issuing_certificate_pem
                                        + authority.root_certificate_pem)
    (tmp_path / "leaf.pem").write_text(me.picked.certificate_pem)

    def with_nonce() -> str:
        done = subprocess.run(
            ["openssl", "ocsp", "-issuer", str(tmp_path / "issuing.pem"), "-cert",
             str(tmp_path / "leaf.pem"), "-CAfile", str(tmp_path / "chain.pem"), "-url",
             f"{processes.ocsp_url}/ocsp"], capture_output=True, text=True)
        return done.stdout + done.stderr

    def good_with_nonce() -> str:
        out = with_nonce()
        return out if "leaf.pem: good" in out else ""

    said = until(good_with_nonce, "an answer to a request with a nonce")
    assert "Response verify OK" in said and "WARNING" not in said, said  # e.g. no nonce
    assert list((tmp_path / "data" / "ocsp-keys").glob("ocsp-*.key.pem"))


def _ocsp_status(url: str, leaf: x509.Certificate, issuer: x509.Certificate) -> str:
    """One OCSP request on a connection of its own (so the kernel spreads them over the
    workers sharing the listening socket)."""
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    with httpx.Client(timeout=5) as client:
        reply = client.post(f"{url}/ocsp", content=request.public_bytes(Encoding.DER),
                            headers={"content-type": "application/ocsp-request"})
    return ocsp.load_der_ocsp_response(reply.content).certificate_status.name.lower()


def test_every_ocsp_worker_answers_revoked_at_once_on_postgresql(
        tmp_path: Path, postgres_url: str) -> None:
    """Issue 19: the OCSP workers agree within a bound after a revocation. On PostgreSQL the
    CA role's publishing wakes on the CA log's NOTIFY and every OCSP worker on the response
    store's: with the poll interval at 30 s, each of 24 requests over fresh connections
    (both workers) says revoked within a few seconds of `partner-ca revoke` returning."""
    reset_postgres(postgres_url)
    system = make_system(tmp_path / "data", postgres_url)
    register(system)
    me = enroll(system)
    issuer = x509.load_pem_x509_certificate(system.ca.authority().issuing_certificate_pem.encode())
    system.close()
    leaf = x509.load_pem_x509_certificate(me.picked.certificate_pem.encode())
    sock = listener()
    url = f"http://127.0.0.1:{port_of(sock)}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_CA_KEY")}
    relying = {**base, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
               "PARTNER_CA_DATABASE_URL": postgres_url, "PARTNER_CA_OCSP_WORKERS": "2",
               "PARTNER_CA_OCSP_LISTEN": f"fd:{sock.fileno()}",
               "PARTNER_CA_RELYING_POLL_SECONDS": "30"}
    ca_env = {**relying, "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE, "PARTNER_CA_PORTAL_LISTEN": ""}
    started = [subprocess.Popen(["partner-ca", "serve", "--role", role],
                                env=ca_env if role == "ca" else relying,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=(tmp_path / f"{role}.log").open("w"),
                                pass_fds=(sock.fileno(),) if role == "ocsp" else ())
               for role in ("ca", "ocsp")]
    sock.close()
    try:
        until(lambda: all(_ocsp_status(url, leaf, issuer) == "good" for _ in range(6)),
              "both workers answering good")
        done = subprocess.run(["partner-ca", "revoke", me.picked.serial, "--reason",
                               "keyCompromise", "--operator", "ops-anna"], env=ca_env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        revoked_at = time.monotonic()
        until(lambda: all(_ocsp_status(url, leaf, issuer) == "revoked" for _ in range(24)),
              "every worker answering revoked", timeout=20)
        took = time.monotonic() - revoked_at
        print(f"every OCSP worker answered revoked {took:.2f} s after the command returned")
        assert took < 5, took  # the poll interval (30 s) would take far longer
    finally:
        for proc in started:
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for role in ("ca", "ocsp"):
            print(f"--- serve --role {role}:\n{(tmp_path / f'{role}.log').read_text()[-3000:]}")


def test_slow_clients_are_dropped_by_the_ocsp_and_crl_listeners(processes: Processes) -> None:
    until(lambda: _up(processes.ocsp_url + "/ocsp/") and _up(processes.crl_url + "/ca/issuing.cer"),
          "both servers")
    for url in (processes.ocsp_url, processes.crl_url):
        check_slow_clients_dropped(url, SLOW_SECONDS)
        assert httpx.get(url + "/ca/issuing.cer" if url == processes.crl_url
                         else url + "/ocsp/").status_code < 500  # still serving


def test_a_relying_role_started_with_a_foreign_secret_drops_it_at_once(tmp_path: Path) -> None:
    """Issue 26 item 7: the OCSP role dropped the CA passphrase from its settings, not from
    its environment, and its worker processes inherited it. Started from a shell that
    exported it, the role starts itself again without it: neither it nor any worker holds
    it, not even in /proc/<pid>/environ."""
    system = make_system(tmp_path / "data")
    system.close()
    sock = listener()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_CA_")}
    env.update({"PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
                "PARTNER_CA_OCSP_LISTEN": f"fd:{sock.fileno()}",
                "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE, "PARTNER_CA_HSM_PIN": "1234",
                "PARTNER_CA_PORTAL_SECRET": "portal secret value",
                "PARTNER_CA_OCSP_KEY_PASSPHRASE": OCSP_KEY_PASSPHRASE})
    proc = subprocess.Popen(["partner-ca", "serve", "--role", "ocsp"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=(tmp_path / "ocsp.log").open("w"), pass_fds=(sock.fileno(),))
    url = f"http://127.0.0.1:{port_of(sock)}"
    sock.close()
    try:
        until(lambda: _up(url + "/ocsp/"), "the OCSP role")

        def children(pid: int) -> list[int]:
            found = []
            for task in Path(f"/proc/{pid}/task").iterdir():
                found += [int(c) for c in (task / "children").read_text().split()]
            return found

        until(lambda: len(children(proc.pid)) >= 2, "its worker processes")
        for pid in [proc.pid, *children(proc.pid)]:
            names = {v.split(b"=", 1)[0] for v in
                     Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")}
            assert not names & {b"PARTNER_CA_KEY_PASSPHRASE", b"PARTNER_CA_HSM_PIN",
                                b"PARTNER_CA_PORTAL_SECRET"}, pid
            assert b"PARTNER_CA_OCSP_KEY_PASSPHRASE" in names  # its own stays
        assert "PARTNER_CA_KEY_PASSPHRASE" in (tmp_path / "ocsp.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
