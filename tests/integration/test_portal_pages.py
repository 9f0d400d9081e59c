"""The portal's pages as an attacker tries them (issue 18): forms without their CSRF token,
a certificate login claimed without the TLS proxy, a pickup link fetched by a mail scanner,
a module administrator reaching past his modules. The browser story is tests/e2e/test_browser.py."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adapters.client import softtoken
from adapters.portal.app import portal_api
from adapters.portal.ops_auth import OpsTokens
from ca_core.errors import DomainError
from ca_core.eventmodel import all_events
from tests.support import MODULE, PASSWORD, USER, enroll, make_system, register


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[tuple[TestClient, object, OpsTokens]]:
    system = make_system(tmp_path / "data")
    register(system)
    tokens = OpsTokens(tmp_path / "ops-tokens.json")
    with TestClient(portal_api(system.portal, ops_tokens=tokens, otp_refusal_seconds=0)) as c:
        yield c, system, tokens
    system.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def test_forms_without_their_csrf_token_change_nothing(pages: tuple) -> None:
    client, system, _ = pages
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    client.get("/")  # the CSRF cookie
    refused = client.post("/login/otp", data={"user_id": USER, "otp": otp})
    assert refused.status_code == 401 and "csrf-invalid" in refused.text
    assert refused.headers["content-type"].startswith("text/html")
    forged = client.post("/login/otp", data={"user_id": USER, "otp": otp, "csrf": "forged"})
    assert forged.status_code == 401
    # the OTP was not used up by either: it still logs in with the page's own token
    good = client.post("/login/otp", data={"user_id": USER, "otp": otp,
                                           "csrf": csrf_of(client.get("/").text)},
                       follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/request"
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")


def test_a_certificate_login_is_believed_only_from_the_trusted_proxy(pages: tuple) -> None:
    client, system, _ = pages
    me = enroll(system)
    spoofed = client.get("/login/certificate", headers={
        "X-Client-Verify": "SUCCESS",
        "X-Client-Certificate": urllib.parse.quote(me.picked.certificate_pem)},
        follow_redirects=False)
    assert spoofed.status_code == 401 and "tls-client-missing" in spoofed.text
    assert "pca_session" not in spoofed.headers.get("set-cookie", "")


def test_the_pickup_link_page_uses_nothing_up_until_its_button(pages: tuple) -> None:
    client, system, _ = pages
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    session = system.portal.login_with_otp(USER, otp)
    request_id = system.portal.submit_request(
        session, softtoken.make_csr(softtoken.new_key(), USER), PASSWORD, PASSWORD)
    system.pump()
    token = system.portal.pickup_token(request_id)
    for _ in range(3):  # a mail scanner, a preview, the partner
        page = client.get(f"/pickup/{request_id}", params={"token": token})
        assert page.status_code == 200 and "<button" in page.text
        assert page.headers["cache-control"] == "no-store"
    assert system.portal.request(request_id).state == "ready"
    picked = client.post(f"/pickup/{request_id}", data={"token": token,
                                                         "csrf": csrf_of(page.text)})
    assert picked.status_code == 200 and "BEGIN CERTIFICATE" in picked.text
    again = client.post(f"/pickup/{request_id}", data={"token": token,
                                                        "csrf": csrf_of(page.text)})
    assert again.status_code == 409 and "pickup-used" in again.text


def test_a_module_administrator_sees_and_acts_only_in_his_modules(pages: tuple) -> None:
    client, system, tokens = pages
    admin = tokens.create("eva", ["admin:REV"])
    login = client.post("/ops/login", data={"token": admin,
                                            "csrf": csrf_of(client.get("/ops").text)})
    assert "eva" in login.text
    csrf = csrf_of(login.text)
    refused = client.post("/ops/otps", data={"user_id": USER, "module": MODULE, "csrf": csrf})
    assert refused.status_code == 403 and 'id="otp-value"' not in refused.text
    found = client.get("/ops", params={"q": USER})
    assert "<table" not in found.text  # his modules hold no request of this user
    # the auditor pages: a user's whole history for operators; a module administrator sees
    # the history of certificates in his modules only
    assert client.get("/audit", params={"user": USER}).status_code == 403
    me = enroll(system)
    # a certificate of another module answers as an unknown serial (issue 26, item 4)
    assert client.get("/audit", params={"serial": me.picked.serial}).status_code == 404
    operator = tokens.create("anna", ["operator"])
    # logging in rotates the CSRF token (issue 26, item 3): the form's token is the new page's
    csrf = csrf_of(client.post("/ops/login", data={"token": operator, "csrf": csrf}).text)
    issued = client.post("/ops/otps", data={"user_id": USER, "module": MODULE, "csrf": csrf})
    assert issued.status_code == 200 and 'id="otp-value"' in issued.text
    assert issued.headers["cache-control"] == "no-store"
    timeline = client.get("/audit", params={"user": USER})
    assert timeline.status_code == 200 and "OtpIssued" in timeline.text
    csv = client.get("/audit.csv", params={"user": USER})
    assert csv.headers["content-type"].startswith("text/csv") and "OtpIssued" in csv.text


def test_the_language_switch_redirects_only_inside_the_site(pages: tuple) -> None:
    client, _, _ = pages
    for evil in ("//evil.example/", "/\\evil.example/", "https://evil.example/",
                 "/\tevil"):
        moved = client.get("/lang/en", params={"next": evil}, follow_redirects=False)
        assert moved.status_code == 303 and moved.headers["location"] == "/", evil
    moved = client.get("/lang/en", params={"next": "/certificate"}, follow_redirects=False)
    assert moved.headers["location"] == "/certificate"
    assert "Log in" in client.get("/").text  # English from now on


def test_a_tossed_csrf_cookie_forges_nothing(pages: tuple) -> None:
    """Issue 26 item 3: an attacker who can set the victim's CSRF cookie (a sibling host, a
    network attacker on http) sets his own seed and submits the token the portal gave him
    for it. The token is bound to the session cookie, so the victim's forms refuse it."""
    client, system, tokens = pages
    attacker = TestClient(client.app)
    attacker_page = attacker.get("/ops")
    seed, forged = attacker.cookies["pca_csrf"], csrf_of(attacker_page.text)
    operator = tokens.create("anna", ["operator"])
    client.post("/ops/login", data={"token": operator, "csrf": csrf_of(client.get("/ops").text)})
    client.cookies.set("pca_csrf", seed)  # tossed into the victim's browser
    reply = client.post("/ops/partners", data={"user_id": "P24-666666", "email": "x@example.com",
                                              "module": MODULE, "csrf": forged})
    assert reply.status_code == 401 and "csrf-invalid" in reply.text
    assert all(e.__class__.__name__ != "PartnerRegistered" or e.user_id != "P24-666666"
               for _, e in all_events(system.portal))


def test_login_rotates_the_csrf_cookie_and_tls_cookies_are_host_prefixed(
        tmp_path: Path) -> None:
    system = make_system(tmp_path / "data")
    register(system)
    tokens = OpsTokens(tmp_path / "ops-tokens.json")
    app = portal_api(system.portal, ops_tokens=tokens, otp_refusal_seconds=0)
    https: dict[str, str] = {}  # the client speaks https itself
    with TestClient(app, base_url="https://portal.example") as client:
        first = client.get("/", headers=https)
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("__Host-pca_csrf=") and "Secure" in cookie \
            and "Path=/" in cookie and "Domain" not in cookie
        seed = client.cookies["__Host-pca_csrf"]
        _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
        login = client.post("/login/otp", headers=https, follow_redirects=False, data={
            "user_id": USER, "otp": otp, "csrf": csrf_of(first.text)})
        assert login.status_code == 303, login.text
        set_cookies = login.headers.get_list("set-cookie")
        assert any(c.startswith("__Host-pca_session=") and "Secure" in c for c in set_cookies)
        assert client.cookies["__Host-pca_csrf"] != seed  # rotated at login
        assert "pca_session" not in {c.split("=")[0] for c in set_cookies}
    system.close()


def test_ops_page_sessions_are_server_side_recorded_and_ended_by_logout(pages: tuple) -> None:
    """Issue 26 item 5: the browser never holds the ops token; a login is a recorded,
    short session; logout ends it for everyone holding the cookie; tokens expire."""
    client, system, tokens = pages
    operator = tokens.create("anna", ["operator"])
    login = client.post("/ops/login", follow_redirects=False, data={
        "token": operator, "csrf": csrf_of(client.get("/ops").text)})
    cookie = client.cookies["pca_ops"]
    assert operator not in cookie and operator not in login.headers["set-cookie"]
    opened = [e for _, e in all_events(system.portal)
              if e.__class__.__name__ == "SessionOpened" and e.kind == "ops"]
    assert [(e.user_id, e.expires_at - e.timestamp) for e in opened] == [
        ("ops:anna", system.portal.rules.session_lifetime)]
    assert "anna" in client.get("/ops").text
    client.post("/ops/logout", data={"csrf": csrf_of(client.get("/ops").text)})
    thief = TestClient(client.app)
    thief.cookies.set("pca_ops", cookie)  # the cookie as it was before logout
    assert "anna" not in thief.get("/ops").text
    assert thief.post("/ops/otps", data={"user_id": USER, "module": MODULE,
                                         "csrf": csrf_of(thief.get("/ops").text)}
                      ).status_code == 401
    # a replaced token ends the page sessions opened with the old one
    again = tokens.create("anna", ["operator"])
    client.post("/ops/login", data={"token": again, "csrf": csrf_of(client.get("/ops").text)})
    assert "anna" in client.get("/ops").text
    tokens.create("anna", ["operator"])
    assert "anna" not in client.get("/ops").text
    # tokens expire: the API and the pages refuse an expired one
    old = tokens.create("olga", ["operator"], days=1,
                        now=datetime.now(UTC) - timedelta(days=2))
    assert client.get("/v1/ops/partners/P24-000123/sessions",
                      headers={"Authorization": f"Bearer {old}"}).status_code == 401
    refused = client.post("/ops/login", data={"token": old,
                                              "csrf": csrf_of(client.get("/ops").text)})
    assert refused.status_code == 401


def test_a_module_administrator_cannot_tell_which_ids_exist_in_other_modules(
        pages: tuple) -> None:
    """Issue 26 item 4: for admin:REV, a user and a certificate of EPAK answer exactly as an
    id and a serial that do not exist — on the search, the OTP form and the ops API."""
    client, system, tokens = pages
    me = enroll(system)  # P24-000123 in EPAK only
    admin = tokens.create("eva", ["admin:REV"])
    csrf = csrf_of(client.post("/ops/login", data={"token": admin, "csrf": csrf_of(
        client.get("/ops").text)}).text)
    nobody_serial = "7F" + me.picked.serial[2:] if not me.picked.serial.startswith("7F") \
        else "6E" + me.picked.serial[2:]

    def search(q: str) -> str:
        page = client.get("/ops", params={"q": q}).text
        assert "<table" not in page and me.picked.serial not in page.split("<form")[-1]
        return page.replace(q, "Q").replace(q.upper(), "Q")

    assert search(USER) == search("P24-999999")
    assert search(me.picked.serial) == search(nobody_serial)
    assert search(me.picked.serial.lower()) == search(nobody_serial.lower())

    def otp_page(user: str) -> tuple[int, str]:
        reply = client.post("/ops/otps", data={"user_id": user, "module": "REV", "csrf": csrf})
        return reply.status_code, reply.text.replace(user, "U")

    assert otp_page(USER) == otp_page("P24-999999")
    assert otp_page(USER)[0] == 404
    assert client.get("/audit", params={"serial": me.picked.serial}).text.replace(
        me.picked.serial, "S") == client.get("/audit", params={"serial": nobody_serial}
                                             ).text.replace(nobody_serial, "S")
    bearer = {"Authorization": f"Bearer {admin}"}
    known = client.post(f"/v1/ops/partners/{USER}/otps", json={"module": "REV"}, headers=bearer)
    unknown = client.post("/v1/ops/partners/P24-999999/otps", json={"module": "REV"},
                          headers=bearer)
    assert known.status_code == unknown.status_code == 404
    assert known.json()["detail"].replace(USER, "U") == unknown.json()["detail"].replace(
        "P24-999999", "U")


@pytest.mark.parametrize("user_id", [
    "<b>P24-000124</b>", "Р24-000124",  # Cyrillic Р
    "P24\u2010000124",  # U+2010 hyphen
    "P24-\uff10\uff10\uff10124",  # fullwidth digits
    "P24-000124\u200b",  # a trailing zero-width space
    "x" * 65])
def test_the_ops_page_registers_only_user_ids_the_api_accepts(pages: tuple,
                                                              user_id: str) -> None:
    """Issue 26 item 6: one rule for user ids at every door, so no certificate's CN renders
    like a real partner's."""
    client, system, tokens = pages
    operator = tokens.create("anna", ["operator"])
    csrf = csrf_of(client.post("/ops/login", data={"token": operator, "csrf": csrf_of(
        client.get("/ops").text)}).text)
    reply = client.post("/ops/partners", data={"user_id": user_id, "email": "x@example.com",
                                              "modules": MODULE, "csrf": csrf})
    assert reply.status_code == 422 and "user-id-invalid" in reply.text, reply.text
    api = client.post("/v1/ops/partners", headers={"Authorization": f"Bearer {operator}"},
                      json={"user_id": user_id, "email": "x@example.com", "modules": [MODULE]})
    assert api.status_code in (400, 422) and "user_id" in api.text
    with pytest.raises(DomainError) as refused:
        system.portal.register_partner(user_id, "x@example.com", [MODULE])
    assert refused.value.code == "user-id-invalid"
    assert not [e for _, e in all_events(system.portal)
                if e.__class__.__name__ == "PartnerRegistered" and e.user_id == user_id]


def test_user_ids_with_surrounding_whitespace_are_refused_by_the_domain(pages: tuple) -> None:
    """The pages trim what was typed; the rule itself takes no whitespace (CLI, API)."""
    _, system, _ = pages
    for user_id in ("P24-000124\n", " P24-000124", "", "P24 000124"):
        with pytest.raises(DomainError) as refused:
            system.portal.register_partner(user_id, "x@example.com", [MODULE])
        assert refused.value.code == "user-id-invalid"


def test_the_auditor_page_and_audit_at_name_the_same_deciding_event(tmp_path: Path) -> None:
    """Issue 26 item 16: the page took the portal's later RevocationConfirmed where `audit
    at` named the CA's CertificateRevoked; one function decides for both now."""
    system = make_system(tmp_path / "data")
    register(system)
    tokens = OpsTokens(tmp_path / "ops-tokens.json")
    app = portal_api(system.portal, ops_tokens=tokens, otp_refusal_seconds=0,
                     audit_apps=lambda: [system.portal, system.ca])
    me = enroll(system)
    system.portal.revoke_as_operator(me.picked.serial, "keyCompromise", "ops-anna")
    system.pump()
    moments = [system.clock.now()]
    with TestClient(app) as client:
        operator = tokens.create("anna", ["operator"])
        client.post("/ops/login", data={"token": operator,
                                        "csrf": csrf_of(client.get("/ops").text)})
        for at in moments:
            cli = system.ca.status_at(me.picked.serial, at)
            page = client.get("/audit", params={"serial": me.picked.serial,
                                                "at": at.isoformat()})
            assert page.status_code == 200
            answer = re.search(r'<p id="status-at-answer">(.*?)</p>', page.text, re.S)
            assert answer is not None, page.text
            assert cli.decided_by == "CertificateRevoked"
            assert f"{cli.decided_by}, ca #" in answer.group(1), answer.group(1)
    system.close()
