"""The manual's chapters over HTTP against `partner-ca serve --role portal` on PostgreSQL, with a
real SMTP server (aiosmtpd) receiving the emails; the pickup link from the email works."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from adapters import softtoken
from tests.e2e.test_kafka_processes import _database
from tests.integration.test_notifications import Inbox, free_port, text_of

PASSPHRASE = "portal http test passphrase"
USER, PASSWORD = "P24-000321", "revocation secret 9"


def until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return found


@pytest.fixture
def portal(tmp_path: Path, postgres_url: str) -> Iterator[tuple[httpx.Client, Inbox,
                                                              dict[str, str]]]:
    inbox, smtp_port, api_port = Inbox(), free_port(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE,
           "PARTNER_CA_DATABASE_URL": _database(postgres_url, "partner_ca_http"),
           "PARTNER_CA_PORTAL_LISTEN": f"127.0.0.1:{api_port}",
           "PARTNER_CA_PORTAL_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
           "PARTNER_CA_SMTP_HOST": "127.0.0.1", "PARTNER_CA_SMTP_PORT": str(smtp_port),
           "PARTNER_CA_RELYING_POLL_SECONDS": "0.2"}
    env.pop("PARTNER_CA_KAFKA_BOOTSTRAP", None)
    for command in (["init"], ["partner", "register", USER, "--email", "p@example.com",
                               "--module", "EPAK"]):
        done = subprocess.run(["partner-ca", *command], env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
    process = subprocess.Popen(["partner-ca", "serve", "--role", "portal"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=(tmp_path / "serve.log").open("w"))
    client = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10)

    def up() -> bool:
        try:
            return client.get("/v1/challenge").status_code == 200
        except httpx.TransportError:
            return False

    try:
        until(up, "the portal API")
        yield client, inbox, env
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
        client.close()
        controller.stop()


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
    accepted = client.post("/v1/requests", headers=bearer(token), json={
        "csr_pem": softtoken.make_csr(key, USER), "revocation_password": PASSWORD,
        "revocation_password_again": PASSWORD})
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]
    until(lambda: client.get(status_url, headers=bearer(token)).json()["state"] == "ready",
          "issuance")
    # the pickup-link email; following the link returns the certificate and its chain
    mail = until(lambda: inbox.messages[:1], "the pickup-link email")[0]
    link = re.search(r"http://\S+/v1/pickup/\S+", text_of(mail))
    assert link is not None
    picked = httpx.get(link.group(0))
    assert picked.status_code == 200, picked.text
    certificate = picked.json()["certificate_pem"]
    assert picked.json()["chain_pem"].count("BEGIN CERTIFICATE") == 2
    assert httpx.get(link.group(0)).status_code == 409, "the link is single-use"

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
    renewal = client.post("/v1/renewals", headers=bearer(login.json()["token"]), json={
        "csr_pem": softtoken.make_csr(new_key, USER), "revocation_password": PASSWORD,
        "revocation_password_again": PASSWORD})
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
