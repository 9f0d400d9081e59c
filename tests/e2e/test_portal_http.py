"""The manual's chapters over HTTP against `partner-ca serve --role portal` on PostgreSQL, with a
real SMTP server (aiosmtpd) receiving the emails; the pickup link from the email works."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from adapters.client import softtoken
from tests.e2e.test_kafka_processes import _database
from tests.integration.test_notifications import Inbox, text_of
from tests.support import inherited_fds, listener, port_of, request_body, smtp_server, until

PASSPHRASE = "portal http test passphrase"
USER, PASSWORD = "P24-000321", "revocation secret 9"




def installation(tmp_path: Path, postgres_url: str, database: str
                 ) -> tuple[dict[str, str], Inbox, Any, socket.socket]:
    """An initialised installation on PostgreSQL with one registered user, mail to aiosmtpd;
    the API's listening socket is made here and handed to every `serve` (fd:N), so restarts
    keep the port and nothing races for it. Hold the returned socket while serve runs."""
    inbox = Inbox()
    controller, smtp_port = smtp_server(inbox)
    api = listener()
    api_port = port_of(api)
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE,
           "PARTNER_CA_DATABASE_URL": _database(postgres_url, database),
           "PARTNER_CA_PORTAL_LISTEN": f"fd:{api.fileno()}",
           "PARTNER_CA_PORTAL_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
           "PARTNER_CA_SMTP_HOST": "127.0.0.1", "PARTNER_CA_SMTP_PORT": str(smtp_port),
           "PARTNER_CA_RELYING_POLL_SECONDS": "0.2", "PARTNER_CA_EXPIRY_INTERVAL_SECONDS": "0.5"}
    env.pop("PARTNER_CA_KAFKA_BOOTSTRAP", None)
    for command in (["init"], ["partner", "register", USER, "--email", "p@example.com",
                               "--module", "EPAK"]):
        done = subprocess.run(["partner-ca", *command], env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
    return env, inbox, controller, api


@pytest.fixture
def portal(tmp_path: Path, postgres_url: str) -> Iterator[tuple[httpx.Client, Inbox,
                                                              dict[str, str]]]:
    env, inbox, controller, _api = installation(tmp_path, postgres_url, "partner_ca_http")
    process, client = start_serve(env, tmp_path / "serve.log")
    try:
        yield client, inbox, env
        stop_serve(process, tmp_path / "serve.log")
    finally:
        if process.poll() is None:
            process.kill()
        client.close()
        controller.stop()


def start_serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    process = subprocess.Popen(["partner-ca", "serve", "--role", "portal"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=log.open("a"), pass_fds=inherited_fds(env))
    client = httpx.Client(base_url=env["PARTNER_CA_PORTAL_PUBLIC_URL"], timeout=10)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            return client.get("/v1/challenge").status_code == 200
        except httpx.TransportError:
            return False

    until(up, "the portal API")
    return process, client


def stop_serve(process: subprocess.Popen[bytes], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()


def otp(env: dict[str, str]) -> str:
    done = subprocess.run(["partner-ca", "otp", "issue", USER, "--module", "EPAK", "--by",
                           "admin-epak"], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    found = re.search(r"([A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})", done.stdout)
    assert found, done.stdout + done.stderr
    return found.group(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_chapters_2_to_9_over_http_with_emails(
        portal: tuple[httpx.Client, Inbox, dict[str, str]]) -> None:
    client, inbox, env = portal
    # ch. 2–3: OTP from the module administrator, login with it
    session = client.post("/v1/sessions/otp", json={"user_id": USER, "otp": otp(env)})
    assert session.status_code == 201, session.text
    token = session.json()["token"]
    # ch. 4: request with the revocation password twice; wait like the manual's screen does
    key = softtoken.new_key()
    accepted = client.post("/v1/requests", headers=bearer(token), json=request_body(key, USER, PASSWORD))
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]
    until(lambda: client.get(status_url, headers=bearer(token)).json()["state"] == "ready",
          "issuance")
    # the pickup-link email; following the link returns the certificate and its chain
    mail = until(lambda: inbox.messages[:1], "the pickup-link email")[0]
    link = re.search(r"http://\S+/pickup/([0-9a-f-]+)\?token=(\S+)", text_of(mail))
    assert link is not None
    for _ in range(2):  # a mail scanner fetching the link uses nothing up: a page, a button
        page = httpx.get(link.group(0))
        assert page.status_code == 200 and "<button" in page.text, page.text
    picked = client.post(f"/v1/pickup/{link.group(1)}", json={"token": link.group(2)})
    assert picked.status_code == 200, picked.text
    certificate = picked.json()["certificate_pem"]
    assert picked.json()["chain_pem"].count("BEGIN CERTIFICATE") == 2
    assert client.post(f"/v1/pickup/{link.group(1)}", json={"token": link.group(2)}
                       ).status_code == 409, "the link is single-use"

    # ch. 5: login with the certificate (the token key signs the challenge)
    def cert_login(cert_pem: str, user_key: softtoken.UserKey) -> httpx.Response:
        challenge = client.get("/v1/challenge").json()["challenge"]
        return client.post("/v1/sessions/certificate", json={
            "certificate_pem": cert_pem, "challenge": challenge,
            "signature_b64": base64.b64encode(softtoken.sign_challenge(user_key, challenge))
            .decode()})

    login = cert_login(certificate, key)
    assert login.status_code == 201, login.text
    # ch. 7: renewal while valid; pickup while logged in; the old certificate is superseded
    new_key = softtoken.new_key()
    renewal = client.post("/v1/renewals", headers=bearer(login.json()["token"]),
                          json=request_body(new_key, USER, PASSWORD))
    assert renewal.status_code == 202, renewal.text
    renewed_url = renewal.json()["status_url"]
    cert_token = login.json()["token"]
    until(lambda: client.get(renewed_url, headers=bearer(cert_token)).json()["state"] == "ready",
          "renewal")
    new_cert = client.get(renewed_url + "/certificate", headers=bearer(cert_token)).json()[
        "certificate_pem"]
    until(lambda: cert_login(certificate, key).status_code == 403, "the old one superseded")
    # ch. 8: revocation with the revocation password; the notice arrives; login stops
    session = cert_login(new_cert, new_key).json()["token"]
    revoked = client.post("/v1/revocations", headers=bearer(session),
                          json={"revocation_password": PASSWORD, "reason": "keyCompromise"})
    assert revoked.status_code == 202, revoked.text
    until(lambda: cert_login(new_cert, new_key).json().get("code") == "certificate-revoked",
          "revocation")
    until(lambda: any("zneplatněn" in str(m["Subject"]) for m in inbox.messages),
          "the revocation email")
    ids = [str(m["Message-ID"]) for m in inbox.messages]
    assert len(ids) == len(set(ids)), "no email twice"


def test_expiry_reminder_and_expiry_emails_from_serve(tmp_path: Path,
                                                      postgres_url: str) -> None:
    """R11 by email: the installation restarted with its clock 10 days before the certificate's
    end (reminder), then one day after it (expiry recorded by the CA, notice sent)."""
    env, inbox, controller, _api = installation(tmp_path, postgres_url,
                                                "partner_ca_http_expiry")
    log = tmp_path / "serve.log"
    try:
        process, client = start_serve(env, log)
        token = client.post("/v1/sessions/otp", json={"user_id": USER, "otp": otp(env)}).json()[
            "token"]
        accepted = client.post("/v1/requests", headers=bearer(token),
                               json=request_body(softtoken.new_key(), USER, PASSWORD)).json()
        until(lambda: client.get(accepted["status_url"], headers=bearer(token)).json()["state"]
              == "ready", "issuance")
        until(lambda: inbox.messages[:1], "the pickup-link email")
        pem = client.get(accepted["status_url"] + "/certificate", headers=bearer(token)).json()[
            "certificate_pem"]
        not_after = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
        stop_serve(process, log)
        client.close()
        for moment, subject in ((not_after - timedelta(days=10), "brzy vyprší"),
                                (not_after + timedelta(days=1), "skončila")):
            process, client = start_serve({**env, "PARTNER_CA_NOW": moment.isoformat()}, log)
            try:
                until(lambda s=subject: any(s in str(m["Subject"]) for m in inbox.messages),
                      f"the '{subject}' email")
            finally:
                stop_serve(process, log)
                client.close()
        ids = [str(m["Message-ID"]) for m in inbox.messages]
        assert len(ids) == len(set(ids)) == 3, [str(m["Subject"]) for m in inbox.messages]
    finally:
        controller.stop()
