"""The portal's front door (issue 16) against `partner-ca serve --role portal` over HTTP:
each attack of the issue, tried as it was tried, now refused."""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.client import softtoken
from tests.e2e.test_portal_http import (
    PASSWORD,
    USER,
    bearer,
    installation,
    otp,
    start_serve,
    stop_serve,
)
from tests.support import check_slow_clients_dropped, listener, port_of, request_body, until

Portal = tuple[httpx.Client, dict[str, str]]


def _serve(tmp_path: Path, postgres_url: str, database: str,
           **extra: str) -> Iterator[Portal]:
    env, _inbox, controller, _api = installation(tmp_path, postgres_url, database)
    env.update(extra)
    log = tmp_path / "serve.log"
    process, client = start_serve(env, log)
    try:
        yield client, env
        stop_serve(process, log)
    finally:
        if process.poll() is None:
            process.kill()
        client.close()
        controller.stop()


@pytest.fixture
def portal(tmp_path: Path, postgres_url: str) -> Iterator[Portal]:
    yield from _serve(tmp_path, postgres_url, "partner_ca_front_door")


def issued(portal: Portal) -> tuple[str, softtoken.UserKey]:
    """A certificate of USER, picked up while logged in with the OTP."""
    client, env = portal
    token = client.post("/v1/sessions/otp", json={"user_id": USER, "otp": otp(env)}).json()[
        "token"]
    key = softtoken.new_key()
    accepted = client.post("/v1/requests", headers=bearer(token),
                           json=request_body(key, USER, PASSWORD)).json()
    until(lambda: client.get(accepted["status_url"], headers=bearer(token)).json()["state"]
          == "ready", "issuance")
    pem = client.get(accepted["status_url"] + "/certificate", headers=bearer(token)).json()[
        "certificate_pem"]
    return pem, key


def signed_login(client: httpx.Client, pem: str, key: softtoken.UserKey,
                 serial: str | None = None) -> dict[str, Any]:
    challenge = client.get("/v1/challenge", params={"serial": serial} if serial else {}).json()[
        "challenge"]
    return {"certificate_pem": pem, "challenge": challenge,
            "signature_b64": base64.b64encode(softtoken.sign_challenge(key, challenge)).decode()}


def refused(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.json()["code"] == code, reply.text


def test_a_signed_challenge_opens_one_session_only(portal: Portal) -> None:
    client, _ = portal
    pem, key = issued(portal)
    triple = signed_login(client, pem, key)
    assert client.post("/v1/sessions/certificate", json=triple).status_code == 201
    for _ in range(2):  # replayed as it was captured
        refused(client.post("/v1/sessions/certificate", json=triple), 401, "challenge-used")
    # a challenge asked for another certificate does not log this one in
    bound = signed_login(client, pem, key, serial="ABCDEF")
    refused(client.post("/v1/sessions/certificate", json=bound), 401, "challenge-foreign")


def test_an_accepted_revocation_stops_login_and_ends_the_session_at_once(
        portal: Portal) -> None:
    client, _ = portal
    pem, key = issued(portal)
    token = client.post("/v1/sessions/certificate",
                        json=signed_login(client, pem, key)).json()["token"]
    other = client.post("/v1/sessions/certificate",
                        json=signed_login(client, pem, key)).json()["token"]
    assert client.post("/v1/revocations", headers=bearer(token), json={
        "revocation_password": PASSWORD, "reason": "keyCompromise"}).status_code == 202
    # immediately, whether or not the CA has confirmed yet
    refused(client.post("/v1/sessions/certificate", json=signed_login(client, pem, key)), 403,
            "certificate-revoked")
    refused(client.post("/v1/renewals", headers=bearer(other),
                        json=request_body(softtoken.new_key(), USER, PASSWORD)), 401,
            "session-ended")


def test_one_certificate_session_renews_once(portal: Portal) -> None:
    client, _ = portal
    pem, key = issued(portal)
    token = client.post("/v1/sessions/certificate",
                        json=signed_login(client, pem, key)).json()["token"]
    first = client.post("/v1/renewals", headers=bearer(token),
                        json=request_body(softtoken.new_key(), USER, PASSWORD))
    assert first.status_code == 202, first.text
    for _ in range(3):
        refused(client.post("/v1/renewals", headers=bearer(token),
                            json=request_body(softtoken.new_key(), USER, PASSWORD)), 409,
                "renewal-pending")


def test_revocation_passwords_cannot_be_guessed(portal: Portal) -> None:
    client, env = portal
    pem, key = issued(portal)
    token = client.post("/v1/sessions/certificate",
                        json=signed_login(client, pem, key)).json()["token"]
    for _ in range(5):
        refused(client.post("/v1/revocations", headers=bearer(token), json={
            "revocation_password": "a wrong guess 1"}), 403, "revocation-password-wrong")
    # locked now: even the right one is refused until ops lift it
    refused(client.post("/v1/revocations", headers=bearer(token),
                        json={"revocation_password": PASSWORD}), 429, "revocation-locked")
    history = subprocess.run(["partner-ca", "audit", "history", "--user", USER, "--json"],
                             env=env, capture_output=True, text=True, check=True).stdout
    assert history.count("RevocationPasswordFailed") == 5 and "RevocationLocked" in history
    assert PASSWORD not in history and "a wrong guess" not in history
    serial = client.post("/v1/sessions/certificate",
                         json=signed_login(client, pem, key)).json()["serial"]
    unlocked = subprocess.run(["partner-ca", "unlock-revocation", serial, "--operator", "anna",
                               "--json"], env=env, capture_output=True, text=True, check=True)
    assert json.loads(unlocked.stdout)["changed"] is True
    assert client.post("/v1/revocations", headers=bearer(token),
                       json={"revocation_password": PASSWORD}).status_code == 202


def test_logout_ends_the_session(portal: Portal) -> None:
    client, env = portal
    token = client.post("/v1/sessions/otp", json={"user_id": USER, "otp": otp(env)}).json()[
        "token"]
    assert client.delete("/v1/session", headers=bearer(token)).status_code == 204
    refused(client.post("/v1/requests", headers=bearer(token),
                        json=request_body(softtoken.new_key(), USER, PASSWORD)), 401,
            "session-ended")


def test_headers_and_no_third_party_scripts(portal: Portal) -> None:
    client, env = portal
    login = client.post("/v1/sessions/otp", json={"user_id": USER, "otp": otp(env)})
    for reply in (login, client.get("/v1/challenge")):
        assert reply.headers["cache-control"] == "no-store"
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
        assert "strict-transport-security" not in reply.headers  # plain HTTP, no proxy
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200


def _otp_logins(client: httpx.Client, n: int, forwarded: bool) -> list[int]:
    return [client.post("/v1/sessions/otp", json={"user_id": USER, "otp": "WRONG"},
                        headers={"X-Forwarded-For": f"198.51.100.{i}"} if forwarded else {}
                        ).status_code for i in range(n)]


def test_x_forwarded_for_from_a_client_does_not_buy_new_attempts(portal: Portal) -> None:
    client, _ = portal
    codes = _otp_logins(client, 21, forwarded=True)
    assert codes[:20] == [401] * 20 and codes[20] == 429, codes


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(
        tmp_path: Path, postgres_url: str) -> None:
    for client, _ in _serve(tmp_path, postgres_url, "partner_ca_front_door_proxy",
                            PARTNER_CA_PORTAL_TRUSTED_PROXIES='["127.0.0.1"]'):
        assert set(_otp_logins(client, 25, forwarded=True)) == {401}  # 25 clients, 1 each
        same = [client.post("/v1/sessions/otp", json={"user_id": USER, "otp": "WRONG"},
                            headers={"X-Forwarded-For": "203.0.113.7"}).status_code
                for _ in range(21)]
        assert same[20] == 429, same
        # over TLS at the proxy: HSTS
        reply = client.get("/v1/challenge", headers={"X-Forwarded-Proto": "https"})
        assert reply.headers["strict-transport-security"].startswith("max-age=")


def test_two_portal_processes_share_one_limit(tmp_path: Path, postgres_url: str) -> None:
    """Three portal processes behind a load balancer must not grant three times the attempts:
    the count is in the portal's store."""
    env, _inbox, controller, _api = installation(tmp_path, postgres_url,
                                                 "partner_ca_front_door_shared")
    second = listener()
    env_b = {**env, "PARTNER_CA_PORTAL_LISTEN": f"fd:{second.fileno()}",
             "PARTNER_CA_PORTAL_PUBLIC_URL": f"http://127.0.0.1:{port_of(second)}"}
    log = tmp_path / "serve.log"
    a, client_a = start_serve(env, log)
    b, client_b = start_serve(env_b, log)
    try:
        codes = [c.post("/v1/sessions/otp", json={"user_id": USER, "otp": "WRONG"}).status_code
                 for _ in range(10) for c in (client_a, client_b)]
        assert codes == [401] * 20, codes
        refused(client_a.post("/v1/sessions/otp", json={"user_id": USER, "otp": "WRONG"}), 429,
                "too-many-attempts")
        refused(client_b.post("/v1/sessions/otp", json={"user_id": USER, "otp": "WRONG"}), 429,
                "too-many-attempts")
    finally:
        for process in (a, b):
            stop_serve(process, log)
        client_a.close()
        client_b.close()
        controller.stop()


def test_five_wrong_otps_lock_every_otp_they_could_have_opened(portal: Portal) -> None:
    """R2, issue 26 item 2: naming another module never sidesteps the lock-out."""
    client, env = portal
    user = "P24-000777"  # registered in two modules

    def cli(*args: str) -> Any:
        done = subprocess.run(["partner-ca", *args, "--json"], env=env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def login(otp: str, module: str | None = None) -> Any:
        body = {"user_id": user, "otp": otp} | ({"module": module} if module else {})
        return client.post("/v1/sessions/otp", json=body)

    cli("partner", "register", user, "--email", "q@example.com", "--module", "EPAK",
        "--module", "REV")
    epak = cli("otp", "issue", user, "--module", "EPAK", "--by", "admin-epak")["otp"]
    # guesses naming REV, where no OTP is open, count against the open EPAK OTP
    for _ in range(5):
        refused(login("WRONG-WRONG", "REV"), 401, "otp-wrong")
    refused(login(epak, "EPAK"), 401, "otp-locked")
    # with an OTP open in each module: aimed at REV, they lock REV only
    epak = cli("otp", "issue", user, "--module", "EPAK", "--by", "admin-epak")["otp"]
    rev = cli("otp", "issue", user, "--module", "REV", "--by", "admin-rev")["otp"]
    for _ in range(5):
        refused(login("WRONG-WRONG", "REV"), 401, "otp-wrong")
    refused(login(rev), 401, "otp-locked")
    refused(login(rev, "EPAK"), 401, "otp-wrong")  # an OTP opens its own module only
    assert login(epak, "EPAK").status_code == 201


def test_ops_list_and_end_sessions(portal: Portal) -> None:
    client, env = portal
    made = subprocess.run(["partner-ca", "ops", "token", "--name", "anna", "--role", "operator",
                           "--json"], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    assert made.returncode == 0, made.stderr
    ops = bearer(json.loads(made.stdout)["token"])
    pem, key = issued(portal)
    tokens = [client.post("/v1/sessions/certificate",
                          json=signed_login(client, pem, key)).json()["token"] for _ in range(2)]
    listed = client.get(f"/v1/ops/partners/{USER}/sessions", headers=ops)
    assert listed.status_code == 200, listed.text
    certificate_sessions = [s for s in listed.json() if s["kind"] == "certificate"]
    assert len(certificate_sessions) == 2
    ended = client.delete(f"/v1/ops/sessions/{certificate_sessions[0]['session_id']}",
                          headers=ops)
    assert ended.json()["status"] == "session ended"
    alive = [client.get("/v1/requests/00000000-0000-0000-0000-000000000000",
                        headers=bearer(t)).json()["code"] for t in tokens]
    assert sorted(alive) == ["request-unknown", "session-ended"], alive  # one ended, one not
    assert client.delete(f"/v1/ops/partners/{USER}/sessions", headers=ops).status_code == 200
    for token in tokens:
        refused(client.get("/v1/requests/00000000-0000-0000-0000-000000000000",
                           headers=bearer(token)), 401, "session-ended")
    assert [s for s in client.get(f"/v1/ops/partners/{USER}/sessions", headers=ops).json()
            if s["kind"] == "certificate"] == []


def test_known_and_unknown_user_ids_answer_alike(tmp_path: Path, postgres_url: str) -> None:
    """A wrong OTP for a registered user records an attempt (a write); for an unknown id there
    is nothing to record. The answer's time must not tell them apart: refusals are answered
    no sooner than a fixed time after the request came in (PARTNER_CA_OTP_REFUSAL_SECONDS)."""
    for client, env in _serve(tmp_path, postgres_url, "partner_ca_front_door_timing",
                              PARTNER_CA_PORTAL_TRUSTED_PROXIES='["127.0.0.1"]',
                              PARTNER_CA_OTP_REFUSAL_SECONDS="0.03"):
        made = subprocess.run(["partner-ca", "ops", "token", "--name", "anna", "--role",
                               "operator", "--json"], env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        assert made.returncode == 0, made.stderr
        ops = bearer(json.loads(made.stdout)["token"])
        known = [f"P24-1{i:05d}" for i in range(24)]
        for user in known:
            assert client.post("/v1/ops/partners", headers=ops, json={
                "user_id": user, "email": "t@example.com", "modules": ["EPAK"]}
            ).status_code == 201
            assert client.post(f"/v1/ops/partners/{user}/otps", headers=ops,
                               json={"module": "EPAK"}).status_code == 201
        pairs: list[tuple[float, float]] = []  # (known, unknown), taken side by side
        for attempt in range(4):  # under the lock-out: every known attempt writes
            for n, user in enumerate(known):
                pair = []
                for who in (user, f"P24-9{attempt}{n:04d}"):
                    began = time.perf_counter()
                    reply = client.post("/v1/sessions/otp", json={"user_id": who, "otp": "WRONG"},
                                        headers={"X-Forwarded-For": f"198.51.{attempt}.{n}"})
                    pair.append(time.perf_counter() - began)
                    refused(reply, 401, "otp-wrong")
                pairs.append((pair[0], pair[1]))
        # without the floor the known id is ~1.3 ms slower here (a PostgreSQL write)
        difference_ms = statistics.median(k - u for k, u in pairs) * 1000
        assert abs(difference_ms) < 0.5, difference_ms
        assert min(min(p) for p in pairs) >= 0.03


def test_slow_clients_are_dropped_by_the_portal_listener(tmp_path: Path,
                                                         postgres_url: str) -> None:
    """Issue 26 item 10: 200 connections sending a header a byte at a time stayed open for
    60 s and more; now each is closed at the header (or body) deadline."""
    served = _serve(tmp_path, postgres_url, "partner_ca_front_door",
                    PARTNER_CA_HTTP_HEADER_SECONDS="2", PARTNER_CA_HTTP_BODY_SECONDS="2")
    client, _env = next(served)
    try:
        check_slow_clients_dropped(str(client.base_url), 2.0)
        assert client.get("/v1/challenge").status_code == 200
    finally:
        next(served, None)
