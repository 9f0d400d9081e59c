"""Identical calls at once (issue 26, item 12): the lost race answers a problem document —
what the winner did, or 409 — never a 500, and nothing is written twice. Over real HTTP
(uvicorn, its thread pool) on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import PartnerCa
from adapters.portal.app import portal_api
from adapters.portal.ops_auth import OpsTokens
from ca_core.eventmodel import all_events
from tests.support import MODULE, PASSWORD, USER, HttpServer, make_system, register, request_body


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[tuple[PartnerCa, str, str]]:
    system = make_system(tmp_path / "data", database_url)
    register(system)
    tokens = OpsTokens(tmp_path / "ops-tokens.json")
    operator = tokens.create("anna", ["operator"])
    server = HttpServer(portal_api(system.portal, ops_tokens=tokens, otp_refusal_seconds=0,
                                   attempts_per_address=1000))
    yield system, server.url, operator
    server.close()
    system.close()


def at_once(n: int, call: Callable[[httpx.Client], httpx.Response]) -> list[httpx.Response]:
    """``n`` threads, released together, each making the call once."""
    barrier = threading.Barrier(n)
    replies: list[Any] = [None] * n

    def run(i: int) -> None:
        with httpx.Client(timeout=30) as client:
            barrier.wait()
            replies[i] = call(client)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return replies


def statuses(replies: list[httpx.Response]) -> Counter[int]:
    for reply in replies:
        assert reply.status_code < 500, reply.text
        if reply.status_code >= 400:
            assert reply.headers["content-type"] == "application/problem+json", reply.text
    return Counter(r.status_code for r in replies)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def enrolled(system: PartnerCa, url: str) -> tuple[str, str, softtoken.UserKey]:
    """(enrollment session token, request id, key) of a signed, not picked up request."""
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    token = httpx.post(f"{url}/v1/sessions/otp", json={"user_id": USER, "otp": otp}).json()[
        "token"]
    key = softtoken.new_key()
    request_id = httpx.post(f"{url}/v1/requests", headers=bearer(token),
                            json=request_body(key)).json()["request_id"]
    system.pump()
    return token, request_id, key


def test_eight_pickups_at_once_give_one_certificate(served: tuple) -> None:
    system, url, _ = served
    token, request_id, _ = enrolled(system, url)
    replies = at_once(8, lambda c: c.get(f"{url}/v1/requests/{request_id}/certificate",
                                         headers=bearer(token)))
    counted = statuses(replies)
    assert counted[200] == 1 and counted[409] == 7, counted
    # the losers were answered what the winner did, not a bare conflict
    assert {r.json()["code"] for r in replies if r.status_code == 409} == {"pickup-used"}
    picked = [e for _, e in all_events(system.portal)
              if type(e).__name__ == "CertificatePickedUp"]
    assert len(picked) == 1


def test_eight_ops_revocations_and_otp_issues_at_once(served: tuple) -> None:
    system, url, operator = served
    token, request_id, _ = enrolled(system, url)
    serial = httpx.get(f"{url}/v1/requests/{request_id}/certificate",
                       headers=bearer(token)).json()["serial"]
    counted = statuses(at_once(8, lambda c: c.post(
        f"{url}/v1/ops/certificates/{serial}/revocation", headers=bearer(operator),
        json={"reason": "keyCompromise"})))
    assert counted[202] == 1 and sum(counted.values()) == 8, counted
    assert len([e for _, e in all_events(system.portal)
                if type(e).__name__ == "RevocationSubmitted"]) == 1
    counted = statuses(at_once(8, lambda c: c.post(
        f"{url}/v1/ops/partners/{USER}/otps", headers=bearer(operator),
        json={"module": MODULE})))
    assert counted[201] >= 1 and set(counted) <= {201, 409}, counted


def test_eight_logouts_and_ten_revocation_passwords_at_once(served: tuple) -> None:
    system, url, _ = served
    token, request_id, key = enrolled(system, url)
    cert = httpx.get(f"{url}/v1/requests/{request_id}/certificate",
                     headers=bearer(token)).json()["certificate_pem"]
    counted = statuses(at_once(8, lambda c: c.delete(f"{url}/v1/session",
                                                     headers=bearer(token))))
    assert counted[204] >= 1 and set(counted) <= {204, 401, 409}, counted
    challenge = httpx.get(f"{url}/v1/challenge").json()["challenge"]
    login = httpx.post(f"{url}/v1/sessions/certificate", json={
        "certificate_pem": cert, "challenge": challenge,
        "signature_b64": base64.b64encode(softtoken.sign_challenge(key, challenge)).decode()})
    session = login.json()["token"]
    counted = statuses(at_once(10, lambda c: c.post(
        f"{url}/v1/revocations", headers=bearer(session),
        json={"revocation_password": "not the password"})))
    # every guess counted, however many came at once: five wrong, then locked
    assert counted == {403: 5, 429: 5}, counted
    failed = [e.attempts for _, e in all_events(system.portal)
              if type(e).__name__ == "RevocationPasswordFailed"]
    assert sorted(failed) == [1, 2, 3, 4, 5]
    assert httpx.post(f"{url}/v1/revocations", headers=bearer(session), json={
        "revocation_password": PASSWORD}).status_code == 429


def test_a_store_that_went_away_answers_503_with_retry_after(
        tmp_path: Path, postgres_url: str) -> None:
    """During a PostgreSQL restart every pooled connection dies: OTP logins answered 500
    (the limiter's write on a dead connection); now 503 with Retry-After, then service."""
    from tests.conftest import reset_postgres

    reset_postgres(postgres_url)
    system = make_system(tmp_path / "data", postgres_url)
    register(system)
    from adapters.storage.attempts import shared_attempts

    server = HttpServer(portal_api(system.portal, otp_refusal_seconds=0, attempts=(
        shared_attempts(postgres_url, tmp_path, 1000, 60))))
    try:
        _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
        assert httpx.post(f"{server.url}/v1/sessions/otp",
                          json={"user_id": USER, "otp": "WRONG"}).status_code == 401
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                          "datname = current_database() AND pid <> pg_backend_pid()")
        replies = [httpx.post(f"{server.url}/v1/sessions/otp",
                              json={"user_id": USER, "otp": "WRONG"}) for _ in range(3)]
        for reply in replies:
            assert reply.status_code in (401, 503), reply.text
            if reply.status_code == 503:
                assert reply.headers["retry-after"] == "5"
                assert reply.json()["code"] == "store-unavailable"
        assert httpx.post(f"{server.url}/v1/sessions/otp",
                          json={"user_id": USER, "otp": otp}).status_code == 201
    finally:
        server.close()
        system.close()


def test_ten_wrong_otps_at_once_are_each_counted(served: tuple) -> None:
    """R2 under a burst: a guess that lost the race to record its failed attempt was not
    counted (409), so bursts of parallel guesses sidestepped the lock-out."""
    system, url, _ = served
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    counted = statuses(at_once(10, lambda c: c.post(f"{url}/v1/sessions/otp", json={
        "user_id": USER, "otp": "AAAA-BBBB-CCCC-DDDD"})))
    assert counted == {401: 10}, counted
    failed = [e for _, e in all_events(system.portal)
              if type(e).__name__ == "OtpAttemptFailed"]
    assert len(failed) == 5
    assert any(type(e).__name__ == "OtpLocked" for _, e in all_events(system.portal))
    locked = httpx.post(f"{url}/v1/sessions/otp", json={"user_id": USER, "otp": otp})
    assert locked.status_code == 401 and locked.json()["code"] == "otp-locked"
