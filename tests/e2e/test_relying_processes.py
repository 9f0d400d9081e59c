"""`partner-ca serve --role ocsp` and `--role crl` as processes: a revocation by `partner-ca revoke`
reaches `openssl ocsp` and the CRL at the distribution point without anyone calling our code."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.support import PASSPHRASE, enroll, listener, make_system, port_of, register, until


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[dict[str, str], str, str]]:
    make_system(tmp_path / "data").close()  # initialised first: serve refuses an empty store
    sockets = {"ocsp": listener(), "crl": listener()}  # handed over: no port is guessed
    ocsp_port, crl_port = port_of(sockets["ocsp"]), port_of(sockets["crl"])
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE,
           "PARTNER_CA_OCSP_LISTEN": f"fd:{sockets['ocsp'].fileno()}",
           "PARTNER_CA_CRL_LISTEN": f"fd:{sockets['crl'].fileno()}",
           "PARTNER_CA_CRL_DELAY_SECONDS": "1", "PARTNER_CA_RELYING_POLL_SECONDS": "0.2"}
    started = [subprocess.Popen(["partner-ca", "serve", "--role", role], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=(tmp_path / f"{role}.log").open("w"),
                                pass_fds=(sockets[role].fileno(),))
               for role in ("ocsp", "crl")]
    for sock in sockets.values():
        sock.close()  # the servers hold them now
    try:
        yield env, f"http://127.0.0.1:{ocsp_port}", f"http://127.0.0.1:{crl_port}"
        for proc in started:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=30) for proc in started] == [0, 0], "clean exit on SIGTERM"
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
        for role in ("ocsp", "crl"):  # shown by pytest when the test failed
            print(f"--- serve --role {role}:\n{(tmp_path / f'{role}.log').read_text()}")


def _up(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError:
        return False
    return True


def test_revocation_by_cli_reaches_openssl_ocsp_and_the_crl(
        tmp_path: Path, processes: tuple[dict[str, str], str, str]) -> None:
    env, ocsp_url, crl_url = processes
    system = make_system(tmp_path / "data", initialise=False)  # SQLite files shared with serve
    register(system)
    me = enroll(system)
    authority = system.ca.authority()
    system.close()
    (tmp_path / "issuing.pem").write_text(authority.issuing_certificate_pem)
    (tmp_path / "root.pem").write_text(authority.root_certificate_pem)
    (tmp_path / "chain.pem").write_text(authority.issuing_certificate_pem
                                        + authority.root_certificate_pem)
    (tmp_path / "leaf.pem").write_text(me.picked.certificate_pem)
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
