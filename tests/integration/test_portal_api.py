"""The portal's HTTP API: the manual's chapters over HTTP, refusals as RFC 9457 problems."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs7
from fastapi.testclient import TestClient

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import PartnerCa
from adapters.portal.app import portal_api
from adapters.portal.ops_auth import OpsTokens
from tests.support import MODULE, PASSWORD, USER, make_system, register, request_body


@pytest.fixture
def api(tmp_path: Path, database_url: str) -> Iterator[tuple[PartnerCa, TestClient]]:
    system = make_system(tmp_path / "data", database_url)
    register(system)
    with TestClient(portal_api(system.portal)) as client:
        yield system, client
    system.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem(reply: Any, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["type"] == f"urn:partner-ca:problem:{code}" and body["code"] == code, body
    assert body["status"] == status and body["detail"]


def otp_login(system: PartnerCa, client: TestClient, user: str = USER) -> str:
    _, otp = system.portal.issue_otp(user, MODULE, issued_by="admin-epak")
    reply = client.post("/v1/sessions/otp", json={"user_id": user, "otp": otp})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["token"])


def request_certificate(system: PartnerCa, client: TestClient, token: str,
                        key: softtoken.UserKey, user: str = USER) -> str:
    reply = client.post("/v1/requests", headers=bearer(token), json=request_body(key, user))
    assert reply.status_code == 202, reply.text
    request_id = str(reply.json()["request_id"])
    assert client.get(f"/v1/requests/{request_id}", headers=bearer(token)).json()["state"] \
        == "submitted"
    system.pump()  # the CA signs (asynchronously in production)
    return request_id


def cert_login(client: TestClient, cert_pem: str, key: softtoken.UserKey) -> Any:
    challenge = client.get("/v1/challenge").json()["challenge"]
    signature = base64.b64encode(softtoken.sign_challenge(key, challenge)).decode()
    return client.post("/v1/sessions/certificate", json={
        "certificate_pem": cert_pem, "challenge": challenge, "signature_b64": signature})


def test_manual_chapters_over_http(api: tuple[PartnerCa, TestClient]) -> None:
    system, client = api
    key = softtoken.new_key()
    token = otp_login(system, client)
    request_id = request_certificate(system, client, token, key)
    status = client.get(f"/v1/requests/{request_id}", headers=bearer(token)).json()
    assert status["state"] == "ready" and status["serial"]
    picked = client.get(f"/v1/requests/{request_id}/certificate", headers=bearer(token)).json()
    assert picked["certificate_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert picked["chain_pem"].count("BEGIN CERTIFICATE") == 2
    login = cert_login(client, picked["certificate_pem"], key)
    assert login.status_code == 201, login.text
    session = login.json()["token"]
    # renewal while valid
    new_key = softtoken.new_key()
    renewed = client.post("/v1/renewals", headers=bearer(session),
                          json=request_body(new_key, USER))
    assert renewed.status_code == 202, renewed.text
    system.pump()
    renewed_id = renewed.json()["request_id"]
    link = system.portal.pickup_token(renewed_id)
    old_form = client.get(f"/v1/pickup/{renewed_id}", params={"token": link},
                          follow_redirects=False)  # a link mailed before: to the page
    assert old_form.status_code == 303 and old_form.headers["location"].startswith(
        f"/pickup/{renewed_id}?token=")
    by_link = client.post(f"/v1/pickup/{renewed_id}", json={"token": link})
    assert by_link.status_code == 200, by_link.text
    new_cert = by_link.json()["certificate_pem"]
    system.pump()  # the old certificate is superseded
    problem(cert_login(client, picked["certificate_pem"], key), 403, "certificate-revoked")
    # revocation with the revocation password
    session = cert_login(client, new_cert, new_key).json()["token"]
    problem(client.post("/v1/revocations", headers=bearer(session),
                        json={"revocation_password": "wrong password 1"}),
            403, "revocation-password-wrong")
    assert client.post("/v1/revocations", headers=bearer(session), json={
        "revocation_password": PASSWORD, "reason": "keyCompromise"}).status_code == 202
    system.pump()
    problem(cert_login(client, new_cert, new_key), 403, "certificate-revoked")
    # chain (R12)
    assert client.get("/v1/chain.pem").text.count("BEGIN CERTIFICATE") == 2
    assert len(pkcs7.load_der_pkcs7_certificates(client.get("/v1/chain.p7b").content)) == 2


def test_refusals_are_problems_and_leak_nothing(api: tuple[PartnerCa, TestClient]) -> None:
    system, client = api
    unknown = client.post("/v1/sessions/otp", json={"user_id": "P24-NOBODY", "otp": "AAAA"})
    wrong = client.post("/v1/sessions/otp", json={"user_id": USER, "otp": "AAAA"})
    problem(unknown, 401, "otp-wrong")
    problem(wrong, 401, "otp-wrong")
    assert unknown.json()["detail"] == wrong.json()["detail"], "no hint whether the user exists"
    problem(client.post("/v1/requests", json={}), 401, "session-required")  # auth first
    problem(client.post("/v1/requests", json={"csr_pem": "x", "revocation_password": "a",
                                              "revocation_password_again": "a"}),
            401, "session-required")
    problem(client.post("/v1/requests", headers=bearer("forged.token.value"), json={
        "csr_pem": "x", "revocation_password": "a", "revocation_password_again": "a"}),
        401, "session-required")
    token = otp_login(system, client)
    problem(client.post("/v1/requests", headers=bearer(token), json={}), 400, "request-invalid")
    problem(client.post("/v1/requests", headers=bearer(token), content=b"{not json"),
            400, "request-invalid")
    problem(client.post("/v1/requests", headers=bearer(token), json={
        "csr_pem": softtoken.make_csr(softtoken.new_key(), USER),
        "revocation_password": PASSWORD, "revocation_password_again": PASSWORD + "x"}),
        422, "revocation-password-mismatch")
    problem(client.post("/v1/requests", headers=bearer(token), json={
        "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
        "revocation_password": PASSWORD, "revocation_password_again": PASSWORD}),
        422, "csr-malformed")
    problem(client.post("/v1/pickup/00000000-0000-0000-0000-000000000000",
                        json={"token": "guess"}), 404, "pickup-link-invalid")
    problem(client.post("/v1/renewals", headers=bearer(token), json={
        "csr_pem": "x", "revocation_password": "a", "revocation_password_again": "a"}),
        401, "session-required")
    problem(client.post("/v1/requests", headers={**bearer(token), "Content-Length": "999999"},
                        content=b"x" * 10), 413, "body-too-large")
    chunks = iter([b"x" * 40_000, b"x" * 40_000])  # streamed: no Content-Length to check
    problem(client.post("/v1/requests", headers=bearer(token), content=chunks),
            413, "body-too-large")
    problem(client.get("/v1/nothing-here"), 404, "not-found")


def test_otp_attempts_per_address_are_limited(tmp_path: Path) -> None:
    system = make_system(tmp_path / "data")
    register(system)
    with TestClient(portal_api(system.portal, attempts_per_address=3)) as client:
        for _ in range(3):
            problem(client.post("/v1/sessions/otp", json={"user_id": USER, "otp": "AAAA"}),
                    401, "otp-wrong")
        problem(client.post("/v1/sessions/otp", json={"user_id": USER, "otp": "AAAA"}),
                429, "too-many-attempts")
    system.close()


def test_openapi_description_names_every_endpoint(api: tuple[PartnerCa, TestClient]) -> None:
    _, client = api
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/sessions/otp", "/v1/requests", "/v1/requests/{request_id}",
            "/v1/requests/{request_id}/certificate", "/v1/pickup/{request_id}",
            "/v1/challenge", "/v1/sessions/certificate", "/v1/renewals", "/v1/revocations",
            "/v1/chain.pem", "/v1/chain.p7b"} <= set(paths)


@pytest.fixture
def ops(tmp_path: Path, database_url: str) -> Iterator[tuple[PartnerCa, TestClient, dict[str, str]]]:
    system = make_system(tmp_path / "data", database_url)
    tokens = OpsTokens(tmp_path / "ops-tokens.json")
    issued = {"epak": tokens.create("anna", ["admin:EPAK"]),
              "rev": tokens.create("petr", ["admin:REV"]),
              "operator": tokens.create("olga", ["operator"])}
    with TestClient(portal_api(system.portal, ops_tokens=tokens)) as client:
        yield system, client, issued
    system.close()


def test_ops_register_issue_otp_revoke_with_roles_per_module_and_who_did_it(
        ops: tuple[PartnerCa, TestClient, dict[str, str]]) -> None:
    system, client, token = ops
    problem(client.post("/v1/ops/partners", json={"user_id": USER, "email": "p@example.com",
                                                  "modules": ["EPAK"]}),
            401, "ops-token-required")
    problem(client.post("/v1/ops/partners", headers=bearer(token["rev"]), json={
        "user_id": USER, "email": "p@example.com", "modules": ["EPAK"]}), 403, "ops-forbidden")
    created = client.post("/v1/ops/partners", headers=bearer(token["epak"]), json={
        "user_id": USER, "email": "p@example.com", "modules": ["EPAK"]})
    assert created.status_code == 201, created.text
    assert created.json()["registered_by"] == "ops:anna"
    # R1: an administrator of another module is refused; a module the user is not in is refused
    problem(client.post(f"/v1/ops/partners/{USER}/otps", headers=bearer(token["rev"]),
                        json={"module": "EPAK"}), 403, "ops-forbidden")
    problem(client.post(f"/v1/ops/partners/{USER}/otps", headers=bearer(token["operator"]),
                        json={"module": "REV"}), 403, "module-not-registered")
    issued = client.post(f"/v1/ops/partners/{USER}/otps", headers=bearer(token["epak"]),
                         json={"module": "EPAK"})
    assert issued.status_code == 201 and issued.json()["issued_by"] == "ops:anna"
    # the user enrols with it over the API
    login = client.post("/v1/sessions/otp", json={"user_id": USER, "otp": issued.json()["otp"]})
    key = softtoken.new_key()
    request_id = request_certificate(system, client, login.json()["token"], key)
    serial = client.get(f"/v1/requests/{request_id}",
                        headers=bearer(login.json()["token"])).json()["serial"]
    # R10: only an operator revokes, with a reason; the CA records who
    problem(client.post(f"/v1/ops/certificates/{serial}/revocation",
                        headers=bearer(token["epak"]), json={"reason": "keyCompromise"}),
            403, "ops-forbidden")
    problem(client.post(f"/v1/ops/certificates/{serial}/revocation",
                        headers=bearer(token["operator"]), json={"reason": "bogus"}),
            400, "request-invalid")
    assert client.post(f"/v1/ops/certificates/{serial}/revocation",
                       headers=bearer(token["operator"]),
                       json={"reason": "privilegeWithdrawn"}).status_code == 202
    system.pump()
    status = client.get(f"/v1/ops/certificates/{serial}", headers=bearer(token["operator"]))
    assert status.json()["status"] == "revoked"
    certificate = system.ca.certificate(serial)
    assert (certificate.revocation_reason, certificate.revoked_by) == (
        "privilegeWithdrawn", "operator:olga")
    problem(client.get("/v1/ops/certificates/ABCDEF", headers=bearer(token["operator"])),
            404, "certificate-unknown")


def test_r3_a_session_whose_request_the_ca_rejected_may_try_again(
        api: tuple[PartnerCa, TestClient]) -> None:
    """A refusal costs the user neither the OTP nor the session: the portal refuses bad input
    before recording anything, and after the CA rejected a request (here: a key already
    certified to another user) the same session may send another, up to three in all."""
    system, client = api
    register(system, "P24-000999")
    taken = softtoken.new_key()
    other = otp_login(system, client, "P24-000999")
    request_certificate(system, client, other, taken, "P24-000999")
    token = otp_login(system, client)
    problem(client.post("/v1/requests", headers=bearer(token), json={
        **request_body(softtoken.new_key()), "revocation_password_again": "typo"}),
        422, "revocation-password-mismatch")
    first = request_certificate(system, client, token, taken)  # key of someone else
    assert client.get(f"/v1/requests/{first}", headers=bearer(token)).json()["state"] \
        == "rejected"
    second = request_certificate(system, client, token, softtoken.new_key())
    assert second != first
    assert client.get(f"/v1/requests/{second}", headers=bearer(token)).json()["state"] \
        == "ready"
    problem(client.post("/v1/requests", headers=bearer(token),
                        json=request_body(softtoken.new_key())), 409, "session-used")
