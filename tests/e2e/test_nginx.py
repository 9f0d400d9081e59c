"""The certificate on the token logs in to nginx (ssl_verify_client on, ssl_ocsp on — the whole
chain: the client certificate and the issuing CA — pointed at our OCSP responder), the key used
on the token through OpenSSL's PKCS#11 engine by curl; after the revocation nginx refuses it."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from adapters.client.token import Token
from ca_core.portal import PickedUpCertificate
from tests.conftest import SoftToken
from tests.support import (
    MODULE,
    PASSPHRASE,
    USER,
    inherited_fds,
    listener,
    make_system,
    port_of,
    register,
    until,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ocsp(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    sock = listener()  # handed to the responder (fd:N): no port is guessed
    port = port_of(sock)
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE, "PARTNER_CA_OCSP_WORKERS": "1",
           "PARTNER_CA_OCSP_LISTEN": f"fd:{sock.fileno()}",
           "PARTNER_CA_RELYING_POLL_SECONDS": "0.2",
           "PARTNER_CA_OCSP_URL": f"http://127.0.0.1:{port}/ocsp"}
    yield env, f"http://127.0.0.1:{port}/ocsp"
    sock.close()


def curl(socket_path: Path, token: SoftToken, cert: Path) -> subprocess.CompletedProcess[str]:
    """curl to nginx on its unix socket (no TCP port to race for), the key on the token."""
    key = f"pkcs11:token={token.label};object=partner-ca;type=private;pin-value={token.pin}"
    return subprocess.run(
        ["curl", "-s", "-k", "-o", "-", "-w", "\n%{http_code}", "--engine", "pkcs11",
         "--key-type", "ENG", "--key", key, "--cert", str(cert), "--unix-socket",
         str(socket_path), "https://127.0.0.1/"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PKCS11_MODULE_PATH": token.module, "SOFTHSM2_CONF": token.conf})


def certificate_on_token(tmp_path: Path, soft_token: SoftToken,
                         ocsp_url: str) -> PickedUpCertificate:
    """A certificate for a key generated on the token (an OTP session on the embedded store),
    written to client.pem and chain.pem in ``tmp_path``."""
    system = make_system(tmp_path / "data", start=datetime.now(UTC) - timedelta(minutes=5),
                         ocsp_url=ocsp_url)
    register(system)
    token = Token(soft_token.label, soft_token.pin, soft_token.module)
    token.generate_key("partner-ca")
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin-epak")
    session = system.portal.login_with_otp(USER, otp)
    request_id = system.portal.submit_request(session, token.csr("partner-ca", USER),
                                              "revocation pw 1", "revocation pw 1")
    system.pump()
    picked = system.portal.pickup(request_id, USER)
    system.close()
    (tmp_path / "client.pem").write_text(picked.certificate_pem)
    (tmp_path / "chain.pem").write_text(picked.chain_pem)
    return picked


def start_responder(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`serve --role ocsp` without the CA passphrase, on the socket ``env`` names."""
    return subprocess.Popen(["partner-ca", "serve", "--role", "ocsp"],
                            env={k: v for k, v in env.items()
                                 if k != "PARTNER_CA_KEY_PASSPHRASE"},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"), pass_fds=inherited_fds(env))


def test_token_certificate_logs_in_to_nginx_until_revoked(
        tmp_path: Path, soft_token: SoftToken, ocsp: tuple[dict[str, str], str]) -> None:
    env, ocsp_url = ocsp
    picked = certificate_on_token(tmp_path, soft_token, ocsp_url)
    # the CA role pre-signs the OCSP responses; the responder only serves them
    signer = subprocess.Popen(["partner-ca", "serve", "--role", "ca"],
                              env={**env, "PARTNER_CA_PORTAL_LISTEN": ""},
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=(tmp_path / "ca.log").open("w"))
    responder = start_responder(env, tmp_path / "ocsp.log")
    run = tmp_path / "nginx"
    listen = f"unix:{run / 'https.sock'}"
    try:
        until(lambda: _answers(ocsp_url), "the OCSP responder")
        started = subprocess.run(["bash", str(ROOT / "deploy/nginx/start.sh"), str(run), listen,
                                  str(tmp_path / "chain.pem"), ocsp_url],
                                 capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        url = run / "https.sock"
        allowed = curl(url, soft_token, tmp_path / "client.pem")
        assert allowed.stdout.endswith("\n200"), (allowed.stdout, allowed.stderr)
        assert f"CN={USER}" in allowed.stdout
        revoked = subprocess.run(["partner-ca", "revoke", picked.serial, "--reason",
                                  "keyCompromise", "--operator", "ops-anna"], env=env,
                                 capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert revoked.returncode == 0, revoked.stderr
        until(lambda: curl(url, soft_token, tmp_path / "client.pem").stdout.endswith("\n400"),
                  "nginx refusing the revoked certificate")
        assert "revoked" in (run / "error.log").read_text()
    finally:
        subprocess.run(["bash", str(ROOT / "deploy/nginx/stop.sh"), str(run)],
                       capture_output=True)
        for process in (responder, signer):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.post(url, content=b"").status_code == 200
    except httpx.TransportError:
        return False


