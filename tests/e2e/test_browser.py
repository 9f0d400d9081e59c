"""The manual's story in a real browser (issue 18): Debian's chromium driven by Playwright,
the portal (`serve --role portal`, embedded CA) behind nginx, mail from a real SMTP server,
the first key on a SoftHSM2 token. Screenshots of the main pages go to docs/screenshots/
(made by this run, so they stay true); axe-core checks each page for serious violations."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from adapters.client import softtoken
from adapters.portal.texts import TEXTS
from ca_core.certificate import serial_hex
from tests.conftest import SoftToken
from tests.e2e.test_nginx import ROOT, _answers, start_responder
from tests.integration.test_notifications import Inbox, text_of
from tests.support import PASSPHRASE, inherited_fds, listener, port_of, smtp_server, until

PROXY = "127.0.0.2"
CHROMIUM = "/usr/bin/chromium"
AXE = Path(os.environ.get("PARTNER_CA_TEST_AXE",
                          "/tmp/partner-ca-axe/node_modules/axe-core/axe.min.js"))
SHOTS = ROOT / "docs" / "screenshots"
TOKEN_USER, BROWSER_USER = "P24-000901", "P24-000902"
PASSWORD = "revocation secret 9"


class Forwarder:
    """TCP on a socket bound here → nginx's unix socket (the browser needs TCP; nginx gets
    no port to guess)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.sock = listener()
        self.port = port_of(self.sock)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(str(self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Portal + embedded CA, OCSP responder, nginx in front, SMTP: all real processes."""
    inbox = Inbox()
    controller, smtp_port = smtp_server(inbox)
    ocsp_sock, api_sock = listener(), listener()
    ocsp_url = f"http://127.0.0.1:{port_of(ocsp_sock)}/ocsp"
    portal = f"127.0.0.1:{port_of(api_sock)}"
    data = tmp_path / "data"
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(data),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE, "PARTNER_CA_OCSP_WORKERS": "1",
           "PARTNER_CA_OCSP_LISTEN": f"fd:{ocsp_sock.fileno()}", "PARTNER_CA_OCSP_URL": ocsp_url,
           "PARTNER_CA_PORTAL_LISTEN": f"fd:{api_sock.fileno()}",
           "PARTNER_CA_RELYING_POLL_SECONDS": "0.2", "PARTNER_CA_OTP_REFUSAL_SECONDS": "0",
           "PARTNER_CA_SMTP_HOST": "127.0.0.1", "PARTNER_CA_SMTP_PORT": str(smtp_port),
           "PARTNER_CA_PORTAL_TRUSTED_PROXIES": json.dumps([PROXY])}
    for name in ("PARTNER_CA_KAFKA_BOOTSTRAP", "PARTNER_CA_DATABASE_URL"):
        env.pop(name, None)
    run = tmp_path / "nginx"
    processes: list[subprocess.Popen[bytes]] = []
    forwarder = Forwarder(run / "https.sock")  # connects to nginx only when a browser does
    base = f"https://127.0.0.1:{forwarder.port}"
    env["PARTNER_CA_PORTAL_PUBLIC_URL"] = base  # the e-mailed links point at nginx
    try:
        cli(env, "init")
        ops = json.loads(cli(env, "ops", "token", "--name", "anna", "--role", "operator",
                             "--json"))["token"]
        processes.append(subprocess.Popen(
            ["partner-ca", "serve", "--role", "portal"], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "portal.log").open("w"),
            pass_fds=inherited_fds(env)))
        processes.append(start_responder(env, tmp_path / "ocsp.log"))
        until(lambda: _answers(ocsp_url), "the OCSP responder")
        until(lambda: _up(f"http://{portal}/"), "the portal")
        started = subprocess.run(["bash", str(ROOT / "deploy/nginx/start.sh"), str(run),
                                  f"unix:{run / 'https.sock'}", str(data / "ca-chain.pem"),
                                  ocsp_url, portal, PROXY], capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        yield {"env": env, "inbox": inbox, "ops": ops, "tmp": tmp_path, "url": base}
    finally:
        forwarder.close()
        subprocess.run(["bash", str(ROOT / "deploy/nginx/stop.sh"), str(run)],
                       capture_output=True)
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        controller.stop()


def cli(env: dict[str, str], *args: str, **extra: str) -> str:
    done = subprocess.run(["partner-ca", *args], env={**env, **extra}, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def accessible(page: Any, name: str) -> None:
    """axe-core in the page: no serious or critical violation; and a screenshot for docs."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document)).violations.map("
                          "v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))")
    serious = [v for v in found if v["impact"] in ("serious", "critical")]
    assert serious == [], (name, serious)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _otp_from_console(page: Any, base: str, user: str) -> str:
    page.goto(f"{base}/ops")
    page.fill("#otp_user", user)
    page.select_option("#otp_module", "EPAK")
    page.click("section[aria-labelledby=issue] button")
    otp = page.text_content("#otp-value")
    assert otp and len(otp) >= 16
    return otp.strip()


def test_the_manual_in_the_browser(installation: dict[str, Any], soft_token: SoftToken) -> None:
    from playwright.sync_api import sync_playwright

    base, env, tmp = installation["url"], installation["env"], installation["tmp"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            _story(browser, base, env, tmp, installation, soft_token)
        finally:
            browser.close()


def _story(browser: Any, base: str, env: dict[str, str], tmp: Path,
           installation: dict[str, Any], soft_token: SoftToken) -> None:
    common = {"ignore_https_errors": True, "bypass_csp": True}  # CSP: only for axe's script
    # -- the ops console: register two partners, issue their OTPs (shown once) ------------
    ops = browser.new_context(**common)
    console = ops.new_page()
    console.goto(f"{base}/ops")
    accessible(console, "ops-login")
    console.fill("#token", installation["ops"])
    console.click("button[type=submit]")
    for user in (TOKEN_USER, BROWSER_USER):
        console.fill("#reg_user", user)
        console.fill("#reg_email", f"{user.lower()}@example.com")
        console.fill("#reg_modules", "EPAK")
        console.click("section[aria-labelledby=register] button")
        assert "registered in EPAK" in console.text_content("[role=status]")
    otp_token_user = _otp_from_console(console, base, TOKEN_USER)
    accessible(console, "ops-console-otp")
    otp_browser_user = _otp_from_console(console, base, BROWSER_USER)

    # -- chapter 4 with the key on the SoftHSM2 token: OTP login, request, waiting, result --
    partner = browser.new_context(**common)
    page = partner.new_page()
    page.goto(base)
    accessible(page, "login")
    page.fill("#user_id", TOKEN_USER)
    page.fill("#otp", "WRONG-OTP")
    page.click("section[aria-labelledby=sw] button")
    assert "otp-wrong" in page.text_content("#problem")  # the error next to the form
    page.fill("#user_id", TOKEN_USER)
    page.fill("#otp", otp_token_user)
    page.click("section[aria-labelledby=sw] button")
    assert page.url.endswith("/request")
    accessible(page, "request")
    command = page.text_content("pre.command code") or ""
    token_env = {"SOFTHSM2_CONF": soft_token.conf, "PARTNER_CA_TOKEN_PIN": soft_token.pin,
                 "PARTNER_CA_PKCS11_MODULE": soft_token.module}
    csr_file = tmp / "request.csr"
    for line in command.strip().splitlines():  # the exact commands the page shows
        args = line.replace("<token>", soft_token.label).replace(
            "request.csr", str(csr_file)).split()
        assert args[0] == "partner-ca"
        cli(env, *args[1:], **token_env)
    page.set_input_files("#csr_file", str(csr_file))
    page.fill("#password", PASSWORD)
    page.fill("#password_again", PASSWORD + "x")
    page.click("form[action='/request'] button")
    assert "revocation-password-mismatch" in page.text_content("#problem")
    # shown next to the field it is about, and the field points at it
    assert page.evaluate("document.querySelector('#problem').previousElementSibling.id") == \
        "password_again"
    page.set_input_files("#csr_file", str(csr_file))
    page.fill("#password", PASSWORD)
    page.fill("#password_again", PASSWORD)
    page.click("form[action='/request'] button")
    page.wait_for_selector("form[action$='/pickup'] button", timeout=60_000)  # by itself
    accessible(page, "result")
    page.click("form[action$='/pickup'] button")
    pem = page.input_value("#certificate_pem")
    assert "BEGIN CERTIFICATE" in pem
    accessible(page, "certificate")
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert TOKEN_USER in cert.subject.rfc4514_string()

    # -- the second partner: request, then the e-mailed link (a page; the button picks up) --
    key = softtoken.new_key()
    second = browser.new_context(**common)
    page = second.new_page()
    page.goto(base)
    # with the keyboard alone: the skip link, then the fields in order, Enter submits
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.focus("#user_id")
    page.keyboard.type(BROWSER_USER)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "otp"
    page.keyboard.type(otp_browser_user)
    page.keyboard.press("Enter")
    page.wait_for_url("**/request")
    page.fill("#csr_pem", softtoken.make_csr(key, BROWSER_USER))
    page.fill("#password", PASSWORD)
    page.fill("#password_again", PASSWORD)
    page.click("form[action='/request'] button")
    inbox = installation["inbox"]
    mail = until(lambda: [m for m in inbox.messages if m["To"] == f"{BROWSER_USER.lower()}"
                          "@example.com"][:1], "the pickup-link e-mail")[0]
    link = re.search(rf"{re.escape(base)}/pickup/\S+", text_of(mail))
    assert link is not None
    path = link.group(0).split("/pickup/", 1)[1]
    scanner = httpx.get(link.group(0), verify=False)  # a mail scanner prefetching the link
    assert scanner.status_code == 200 and "<button" in scanner.text
    mailed = browser.new_context(**common).new_page()
    mailed.goto(f"{base}/pickup/{path}")
    accessible(mailed, "pickup-link")
    mailed.click("form[action^='/pickup/'] button")
    browser_pem = mailed.input_value("#certificate_pem")
    assert "BEGIN CERTIFICATE" in browser_pem
    mailed.goto(f"{base}/pickup/{path}")
    mailed.click("form[action^='/pickup/'] button")
    assert "pickup-used" in mailed.text_content("#problem")  # single-use

    # -- chapter 6: login with the certificate through nginx (TLS client authentication) ---
    def with_certificate(pem: str, user_key: softtoken.UserKey, name: str) -> Any:
        (tmp / f"{name}.pem").write_text(pem)
        (tmp / f"{name}.key").write_text(softtoken.key_pem(user_key))
        return browser.new_context(**common, client_certificates=[{
            "origin": base, "certPath": str(tmp / f"{name}.pem"),
            "keyPath": str(tmp / f"{name}.key")}]).new_page()

    manager = with_certificate(browser_pem, key, "first")
    manager.goto(f"{base}/?tab=hardware")
    accessible(manager, "login-hardware")
    manager.click("a[href='/login/certificate']")
    assert manager.url.endswith("/certificate")
    assert manager.text_content("#status") in ("platný", "valid")
    accessible(manager, "certificate-manager")

    # -- chapter 8: renewal while valid --------------------------------------------------
    new_key = softtoken.new_key()
    manager.fill("#renew_csr", softtoken.make_csr(new_key, BROWSER_USER))
    manager.fill("#renew_password", PASSWORD)
    manager.fill("#renew_password_again", PASSWORD)
    manager.click("form[action='/renewal'] button")
    manager.wait_for_selector("form[action$='/pickup'] button", timeout=60_000)
    manager.click("form[action$='/pickup'] button")
    renewed_pem = manager.input_value("#certificate_pem")
    assert "BEGIN CERTIFICATE" in renewed_pem and renewed_pem != browser_pem

    # -- chapter 9: revocation with the revocation password; login refused afterwards ----
    renewed = with_certificate(renewed_pem, new_key, "renewed")
    renewed.goto(f"{base}/login/certificate")
    assert renewed.url.endswith("/certificate"), renewed.content()
    renewed.fill("#revocation_password", "not the password")
    renewed.click("form[action='/revocation'] button")
    assert "revocation-password-wrong" in renewed.text_content("#problem")
    renewed.fill("#revocation_password", PASSWORD)
    renewed.select_option("#reason", "keyCompromise")
    renewed.click("form[action='/revocation'] button")
    assert renewed.url.split("?")[0].rstrip("/") == base  # back at the login page
    assert renewed.text_content("[role=status]") in (
        TEXTS["revocation_done"]["cs"], TEXTS["revocation_done"]["en"])
    refused = renewed.goto(f"{base}/login/certificate")
    assert refused is not None and refused.status in (400, 401, 403), refused.status

    # -- the ops console revokes the token user's certificate (R10), then finds it --------
    token_serial = serial_hex(cert.serial_number)
    console.goto(f"{base}/ops")
    console.fill("#rev_serial", token_serial)
    console.select_option("#rev_reason", "cessationOfOperation")
    console.click("section[aria-labelledby=revoke] form[action='/ops/revocations'] button")
    assert "revocation requested" in console.text_content("[role=status]")
    until(lambda: (console.goto(f"{base}/ops?q={TOKEN_USER}") and "revoked" in (
        console.text_content("table") or "")), "the ops console showing the revocation")

    # -- the auditor: the certificate's timeline, status at a moment, CSV -----------------
    serial = serial_hex(x509.load_pem_x509_certificate(renewed_pem.encode()).serial_number)
    console.goto(f"{base}/audit?serial={serial}")
    assert console.locator("svg circle").count() >= 3
    assert "RevocationSubmitted" in console.text_content("table.timeline")
    accessible(console, "audit-timeline")
    console.fill("#a_at", "2000-01-01T00:00:00Z")
    console.click("form[action='/audit'] button")
    assert console.text_content("#status-at-answer") in ("neznámý", "unknown")
