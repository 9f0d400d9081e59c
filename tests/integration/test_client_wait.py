"""`client request --token --no-wait`, then `client pickup --token` / `client wait` by request id,
against the portal API over real HTTP and a SoftHSM2 token (the CA answers when the test says)."""

from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from adapters.client.token import Token
from adapters.entrypoints.cli import app
from adapters.portal.app import portal_api
from tests.conftest import SoftToken
from tests.support import MODULE, USER, HttpServer, make_system, register

PASSWORD = "revocation words 42"


def test_request_now_pick_up_later_by_request_id(tmp_path: Path, soft_token: SoftToken) -> None:
    system = make_system(tmp_path / "data")
    register(system)
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    server = HttpServer(portal_api(system.portal))
    state = tmp_path / "client-state"
    env = {"PARTNER_CA_PORTAL_URL": server.url, "PARTNER_CA_CLIENT_STATE_DIR": str(state),
           "PARTNER_CA_PKCS11_MODULE": soft_token.module,
           "PARTNER_CA_TOKEN_PIN": soft_token.pin, "PARTNER_CA_REVOCATION_PASSWORD": PASSWORD}
    runner = CliRunner()

    def cli(*args: str) -> tuple[int, str]:
        done = runner.invoke(app, ["client", *args], env=env)
        return done.exit_code, done.output

    try:
        env["PARTNER_CA_OTP"] = otp
        code, output = cli("request", "--user", USER, "--token", soft_token.label, "--no-wait")
        assert code == 0, output
        request_id = output.split("request ", 1)[1].split()[0]
        remembered = state / "requests" / f"{request_id}.json"
        assert stat.S_IMODE(remembered.stat().st_mode) == 0o600
        assert otp not in remembered.read_text() and PASSWORD not in remembered.read_text()

        # the CA has not answered yet: picking up now is a clear refusal, nothing is lost
        code, output = cli("pickup", request_id, "--token", soft_token.label)
        assert code == 1 and "[certificate-not-ready]" in output, output
        assert remembered.exists()

        system.pump()  # the CA issues
        code, output = cli("wait", request_id)  # the token label comes from the request
        assert code == 0 and "is on token" in output, output
        assert not remembered.exists()
        labels = {label for label, _ in
                  Token(soft_token.label, soft_token.pin, soft_token.module).certificates()}
        assert "partner-ca" in labels

        code, output = cli("wait", request_id)
        assert code == 1 and "[request-unknown]" in output, output
        code, output = cli("pickup", request_id)
        assert code == 2 and "give --token" in output, output
    finally:
        server.close()
        system.close()
