"""The portal behind nginx, as operators run it (deploy/nginx/portal.conf.in): nginx
terminates TLS, offers the hardware-certificate login as TLS client authentication
(ssl_verify_client optional, OCSP against our responder) and passes the verified
certificate on; the portal believes it only from the trusted proxy. The key stays on the
SoftHSM token, used by curl through OpenSSL's PKCS#11 engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import httpx

from tests.conftest import SoftToken
from tests.e2e.test_nginx import ROOT, _answers, certificate_on_token, start_responder
from tests.support import (
    PASSPHRASE,
    USER,
    inherited_fds,
    listener,
    port_of,
    until,
)

PROXY = "127.0.0.2"  # nginx connects to the portal from here; the only trusted proxy


def curl(sock: Path, path: str, token: SoftToken | None = None, cert: Path | None = None,
         method: str = "POST", headers: tuple[str, ...] = ()) -> tuple[int, dict[str, object]]:
    command = ["curl", "-s", "-k", "-X", method, "-o", "-", "-w", "\n%{http_code}",
               "--unix-socket", str(sock), f"https://127.0.0.1{path}"]
    for header in headers:
        command += ["-H", header]
    env = dict(os.environ)
    if token is not None and cert is not None:
        key = f"pkcs11:token={token.label};object=partner-ca;type=private;pin-value={token.pin}"
        command += ["--engine", "pkcs11", "--key-type", "ENG", "--key", key, "--cert", str(cert)]
        env.update(PKCS11_MODULE_PATH=token.module, SOFTHSM2_CONF=token.conf)
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    body, _, status = done.stdout.rpartition("\n")
    return int(status or 0), (json.loads(body) if body.startswith("{") else {"raw": body})


def test_hardware_certificate_login_through_nginx_and_nowhere_else(
        tmp_path: Path, soft_token: SoftToken) -> None:
    ocsp_sock, api_sock = listener(), listener()
    ocsp_url = f"http://127.0.0.1:{port_of(ocsp_sock)}/ocsp"
    portal = f"127.0.0.1:{port_of(api_sock)}"
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE, "PARTNER_CA_OCSP_WORKERS": "1",
           "PARTNER_CA_OCSP_LISTEN": f"fd:{ocsp_sock.fileno()}", "PARTNER_CA_OCSP_URL": ocsp_url,
           "PARTNER_CA_PORTAL_LISTEN": f"fd:{api_sock.fileno()}",
           "PARTNER_CA_RELYING_POLL_SECONDS": "0.2",
           "PARTNER_CA_PORTAL_TRUSTED_PROXIES": json.dumps([PROXY])}
    env.pop("PARTNER_CA_KAFKA_BOOTSTRAP", None)
    picked = certificate_on_token(tmp_path, soft_token, ocsp_url)
    cert = tmp_path / "client.pem"
    serve = subprocess.Popen(["partner-ca", "serve", "--role", "portal"], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=(tmp_path / "portal.log").open("w"),
                             pass_fds=inherited_fds(env))
    responder = start_responder(env, tmp_path / "ocsp.log")
    run = tmp_path / "nginx"
    sock = run / "https.sock"
    try:
        until(lambda: _answers(ocsp_url), "the OCSP responder")
        until(lambda: _up(f"http://{portal}/v1/challenge"), "the portal API")
        started = subprocess.run(["bash", str(ROOT / "deploy/nginx/start.sh"), str(run),
                                  f"unix:{sock}", str(tmp_path / "chain.pem"), ocsp_url,
                                  portal, PROXY], capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        # the API through TLS
        status, _ = curl(sock, "/v1/challenge", method="GET")
        assert status == 200
        # chapter 6: the certificate on the token logs in with the TLS handshake alone
        status, body = curl(sock, "/v1/sessions/tls-client", soft_token, cert)
        assert status == 201, body
        assert (body["kind"], body["user_id"], body["serial"]) == (
            "certificate", USER, picked.serial)
        # no certificate at the proxy: refused
        status, body = curl(sock, "/v1/sessions/tls-client",
                            headers=("X-Client-Verify: SUCCESS",
                                     "X-Client-Certificate: " + urllib.parse.quote(
                                         picked.certificate_pem)))
        assert (status, body.get("code")) == (401, "tls-client-missing"), body
        # straight to the portal, not through the proxy: the headers are not believed
        spoofed = httpx.post(f"http://{portal}/v1/sessions/tls-client", headers={
            "X-Client-Verify": "SUCCESS",
            "X-Client-Certificate": urllib.parse.quote(picked.certificate_pem),
            "X-Forwarded-For": PROXY})
        assert (spoofed.status_code, spoofed.json()["code"]) == (401, "tls-client-untrusted")
        # revoked: refused
        revoked = subprocess.run(["partner-ca", "revoke", picked.serial, "--reason",
                                  "keyCompromise", "--operator", "ops-anna"], env=env,
                                 capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert revoked.returncode == 0, revoked.stderr
        deadline = time.monotonic() + 30
        while (answer := curl(sock, "/v1/sessions/tls-client", soft_token, cert))[0] == 201:
            assert time.monotonic() < deadline, f"still logs in after revocation: {answer}"
            time.sleep(0.2)
        # nginx's own OCSP check refuses the handshake's certificate (400), or the portal
        # does, from its status view (403), whichever learns of it first
        assert answer[0] == 403 or (answer[0] == 400 and "SSL certificate error" in str(
            answer[1])), answer
    finally:
        subprocess.run(["bash", str(ROOT / "deploy/nginx/stop.sh"), str(run)],
                       capture_output=True)
        for process in (responder, serve):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
