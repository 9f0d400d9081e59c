"""Metrics and health of a `serve` role (issue 19): the counters move by exactly what happened
in a lifecycle driven over HTTP; /readyz goes unready when PostgreSQL is stopped and ready
again when it is back."""

from __future__ import annotations

import base64
import os
import subprocess
import urllib.parse
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from adapters.client import softtoken
from tests.e2e.test_portal_http import PASSWORD, USER, bearer, installation, otp, start_serve
from tests.support import listener, port_of, request_body, until

ROOT = Path(__file__).resolve().parents[2]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, labels)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _pg(action: str, postgres_url: str) -> None:
    port = str(urllib.parse.urlsplit(postgres_url).port or 5432)
    done = subprocess.run(["bash", str(ROOT / f"deploy/postgres/{action}.sh")],
                          env={**os.environ, "PARTNER_CA_PG_PORT": port}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_counters_follow_the_lifecycle_and_readyz_follows_the_database(
        tmp_path: Path, postgres_url: str) -> None:
    env, inbox, controller, _api = installation(tmp_path, postgres_url, "partner_ca_metrics")
    ops = listener()
    env["PARTNER_CA_METRICS_LISTEN"] = f"fd:{ops.fileno()}"
    env["PARTNER_CA_CRL_DELAY_SECONDS"] = "1"
    metrics = f"http://127.0.0.1:{port_of(ops)}"
    log = tmp_path / "serve.log"
    process, client = start_serve(env, log)
    try:
        assert httpx.get(f"{metrics}/healthz").json() == {"status": "alive"}
        until(lambda: httpx.get(f"{metrics}/readyz").status_code == 200, "ready")
        before = scrape(metrics)

        def moved(name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return scrape(metrics).get(key, 0.0) - before.get(key, 0.0)

        # chapter 4: request, issuance, pickup mail; chapter 9: revocation
        token = client.post("/v1/sessions/otp", json={"user_id": USER, "otp": otp(env)}
                            ).json()["token"]
        key = softtoken.new_key()
        accepted = client.post("/v1/requests", headers=bearer(token),
                               json=request_body(key, USER, PASSWORD)).json()
        until(lambda: client.get(accepted["status_url"], headers=bearer(token)).json()["state"]
              == "ready", "issuance")
        pem = client.get(accepted["status_url"] + "/certificate", headers=bearer(token)
                         ).json()["certificate_pem"]
        until(lambda: inbox.messages[:1], "the pickup mail")
        until(lambda: moved("partner_ca_mails_total", outcome="sent") >= 1, "mail counted")
        # a wrong OTP five times locks it (one lock-out)
        otp(env)  # a new OTP, then five wrong tries at it
        for _ in range(5):
            client.post("/v1/sessions/otp", json={"user_id": USER, "otp": "WRONG",
                                                  "module": "EPAK"})
        challenge = client.get("/v1/challenge").json()["challenge"]
        session = client.post("/v1/sessions/certificate", json={
            "certificate_pem": pem, "challenge": challenge,
            "signature_b64": base64.b64encode(softtoken.sign_challenge(key, challenge)).decode()
        }).json()["token"]
        assert client.post("/v1/revocations", headers=bearer(session), json={
            "revocation_password": PASSWORD, "reason": "keyCompromise"}).status_code == 202
        until(lambda: moved("partner_ca_certificates_revoked_total", reason="keyCompromise")
              == 1, "the revocation counted")
        assert moved("partner_ca_certificates_issued_total") == 1
        assert moved("partner_ca_issuance_seconds_count") == 1
        assert moved("partner_ca_lockouts_total", kind="otp") == 1
        assert moved("partner_ca_requests_rejected_total", code="csr-malformed") == 0
        samples = scrape(metrics)
        # init published the first CRL; this process counts those it publishes: the one
        # the revocation makes due (PARTNER_CA_CRL_DELAY_SECONDS=1 here)
        until(lambda: moved("partner_ca_crls_published_total") >= 1, "the CRL counted")
        assert samples[("partner_ca_status_view_lag", ())] >= 0
        assert ("partner_ca_crl_age_seconds", ()) in samples

        # the database stops: unready, and says which check; back: ready
        _pg("stop", postgres_url)
        try:
            down = until(lambda: (r := httpx.get(f"{metrics}/readyz", timeout=30)
                                  ).status_code == 503 and r, "unready without PostgreSQL")
            assert down.json()["checks"]["portal-store"] != "ok"
            assert httpx.get(f"{metrics}/healthz").status_code == 200  # alive all the same
        finally:
            _pg("start", postgres_url)
        until(lambda: httpx.get(f"{metrics}/readyz", timeout=30).status_code == 200,
              "ready again", timeout=90)
    finally:
        process.terminate()
        process.wait(timeout=30)
        client.close()
        controller.stop()
        ops.close()
