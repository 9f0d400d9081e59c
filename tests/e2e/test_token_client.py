"""The manual chapter by chapter with a SoftHSM2 token: `partner-ca client`/`token` against
`serve` (portal and CA as separate processes on PostgreSQL + Kafka) and a real SMTP server."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx

from tests.conftest import SoftToken
from tests.e2e import test_kafka_processes as kafka_processes
from tests.e2e.test_kafka_processes import Roles
from tests.integration.test_notifications import Inbox, text_of
from tests.support import listener, port_of, smtp_server, until

USER, PASSWORD = "P24-000555", "revocation secret 5"


env = kafka_processes.env  # the same fixtures: fresh databases and topics, serve processes
roles = kafka_processes.roles




def cli(env: dict[str, str], *args: str, check: int | None = 0,
        **extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["partner-ca", *args], env={**env, **extra}, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=180)
    if check is not None:
        assert done.returncode == check, (args, done.stdout, done.stderr)
    return done


def test_manual_with_a_token_against_serve_on_postgres_and_kafka(
        env: dict[str, str], roles: Roles, soft_token: SoftToken, tmp_path: Path) -> None:
    inbox = Inbox()
    controller, smtp_port = smtp_server(inbox)
    api, ocsp = listener(), listener()  # handed to the serve roles: no port is guessed
    api_port, ocsp_port = port_of(api), port_of(ocsp)
    env = {**env, "PARTNER_CA_PORTAL_LISTEN": f"fd:{api.fileno()}",
           "PARTNER_CA_PORTAL_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
           "PARTNER_CA_PORTAL_URL": f"http://127.0.0.1:{api_port}",
           "PARTNER_CA_NOTIFIER_IN_PORTAL": "true", "PARTNER_CA_SMTP_HOST": "127.0.0.1",
           "PARTNER_CA_SMTP_PORT": str(smtp_port), "PARTNER_CA_RELYING_POLL_SECONDS": "0.3",
           "SOFTHSM2_CONF": soft_token.conf, "PARTNER_CA_PKCS11_MODULE": soft_token.module,
           "PARTNER_CA_OCSP_LISTEN": f"fd:{ocsp.fileno()}", "PARTNER_CA_OCSP_WORKERS": "1",
           "PARTNER_CA_OCSP_URL": f"http://127.0.0.1:{ocsp_port}/ocsp", "COLUMNS": "250",
           "PARTNER_CA_CLIENT_STATE_DIR": str(tmp_path / "client-state"),
           "PARTNER_CA_AUDIT_CHECKPOINT_SECONDS": "1",
           # the audit key's own passphrase: the portal signs its heads without the CA's
           "PARTNER_CA_AUDIT_KEY_PASSPHRASE": "audit key passphrase 1"}
    roles.env = env
    try:
        for role in ("ca", "portal", "ocsp"):
            roles.start(role)
        until(lambda: _up(f"http://127.0.0.1:{api_port}/v1/challenge"), "the portal API")
        pin = {"PARTNER_CA_TOKEN_PIN": soft_token.pin}
        token = ["--token", soft_token.label]
        # ch. 2: the module administrator registers the user and issues the OTP
        cli(env, "partner", "register", USER, "--email", "user@example.com", "--module", "EPAK")
        issued = cli(env, "otp", "issue", USER, "--module", "EPAK", "--by", "admin-epak")
        otp = re.search(r"([A-Z2-7]{4}(?:-[A-Z2-7]{4}){3})", issued.stdout)
        assert otp is not None
        # ch. 3–4: OTP login, key generated on the token, request; later: wait, pickup, the
        # certificate on the token
        done = cli(env, "client", "request", "--user", USER, *token,
                   "--no-wait", **pin, PARTNER_CA_REVOCATION_PASSWORD=PASSWORD,
                   PARTNER_CA_OTP=otp.group(1))
        request_id = re.search(r"request (\S+) submitted", done.stdout)
        assert request_id is not None, done.stdout
        done = cli(env, "client", "wait", request_id.group(1), **pin)
        assert "is on token" in done.stdout, done.stdout
        objects = cli(env, "token", "objects", *token, **pin).stdout
        assert re.search(r"private-key\s+│\s*partner-ca\s+│\s*\w+\s+│\s*no\s+│\s*yes", objects), \
            objects
        # the emailed pickup link is there too (already used by the client's pickup)
        mail = until(lambda: inbox.messages[:1], "the pickup-link email")[0]
        assert "/pickup/" in text_of(mail)
        # ch. 5: login with the certificate on the token
        assert "logged in as " + USER in cli(env, "client", "login", *token, **pin).stdout
        shown = until(lambda: "good" in (r := cli(env, "token", "show", *token, **pin).stdout)
                      and r, "OCSP says good")
        assert "P24-000555" in shown
        # ch. 6: PIN change — the old PIN then fails, the new one works
        cli(env, "token", "change-pin", *token, **pin, PARTNER_CA_TOKEN_NEW_PIN="654321")
        wrong = cli(env, "client", "login", *token, **pin, check=1)
        assert "[token-pin-wrong]" in wrong.stderr
        new_pin = {"PARTNER_CA_TOKEN_PIN": "654321"}
        cli(env, "client", "login", *token, **new_pin)
        # ch. 7: renewal while valid, a new key on the token
        done = cli(env, "client", "renew", *token, **new_pin,
                   PARTNER_CA_REVOCATION_PASSWORD=PASSWORD)
        assert "is on token" in done.stdout, done.stdout
        renewed = ["--key-label", "partner-ca-renewed"]
        until(lambda: "certificate-revoked" in cli(env, "client", "login", *token, **new_pin,
                                                   check=None).stderr, "the old one superseded")
        # ch. 8: revocation with the revocation password; then login is refused
        cli(env, "client", "revoke", *token, *renewed, "--reason", "keyCompromise", **new_pin,
            PARTNER_CA_REVOCATION_PASSWORD=PASSWORD)
        refused = until(lambda: (r := cli(env, "client", "login", *token, *renewed, **new_pin,
                                          check=None)).returncode == 1
                        and "[certificate-revoked]" in r.stderr and r, "login refused")
        assert refused.stderr.count("\n") == 1, "a one-line error"
        until(lambda: any("zneplatněn" in str(m["Subject"]) for m in inbox.messages),
              "the revocation email")
        # the auditor: tree heads signed by the serve roles, copied from Kafka, and checked
        heads = tmp_path / "heads-from-kafka.jsonl"
        until(lambda: cli(env, "audit", "fetch-heads", "--out", str(heads)) and {
            json.loads(line)["application"] for line in heads.read_text().splitlines()}
            == {"ca", "portal"}, "signed tree heads of both logs on Kafka")
        verified = cli(env, "audit", "verify", "--heads", str(heads))
        assert verified.stdout.count("intact") == 2, verified.stdout
        roles.assert_alive()
    finally:
        controller.stop()
        api.close()
        ocsp.close()
        assert os.environ.get("PARTNER_CA_TOKEN_PIN") is None


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
