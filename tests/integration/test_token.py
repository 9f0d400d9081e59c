"""The hardware token over PKCS#11 (SoftHSM2): keys that never leave it, judged by openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from adapters.client.token import Token, TokenError, list_tokens
from ca_core.x509profile import split_pems
from tests.conftest import SoftToken
from tests.support import MODULE, USER, make_system, register


def test_key_generated_on_the_token_is_not_extractable_and_signs_the_csr(
        tmp_path: Path, soft_token: SoftToken) -> None:
    token = Token(soft_token.label, soft_token.pin, soft_token.module)
    assert soft_token.label in [t.label for t in list_tokens(soft_token.module)]
    token.generate_key("portal")
    [private] = [o for o in token.objects() if o.kind == "private-key"]
    assert (private.extractable, private.sensitive) == (False, True)
    (tmp_path / "req.pem").write_text(token.csr("portal", USER))
    verified = subprocess.run(["openssl", "req", "-verify", "-noout", "-in",
                               str(tmp_path / "req.pem")], capture_output=True, text=True)
    assert verified.returncode == 0 and "verify OK" in verified.stderr
    with pytest.raises(TokenError) as exists:
        token.generate_key("portal")
    assert exists.value.code == "token-key-exists"


def test_certificate_on_the_token_logs_in_and_pin_change_r6(soft_token: SoftToken,
                                                            tmp_path: Path) -> None:
    token = Token(soft_token.label, soft_token.pin, soft_token.module)
    token.generate_key("portal")
    system = make_system(tmp_path / "data")
    register(system)
    _, otp = system.portal.issue_otp(USER, MODULE, issued_by="admin")
    session = system.portal.login_with_otp(USER, otp)
    request_id = system.portal.submit_request(session, token.csr("portal", USER), "pw pw pw 1",
                                              "pw pw pw 1")
    system.pump()
    picked = system.portal.pickup(request_id, USER)
    chain = [picked.certificate_pem, *split_pems(picked.chain_pem)]
    token.import_certificates("portal", chain)
    on_token = dict(token.certificates())  # label → certificate; the token keeps no order
    assert set(on_token) == {"portal", "portal-chain-1", "portal-chain-2"}
    assert format(on_token["portal"].serial_number, "X").rjust(32, "0") == picked.serial
    challenge = system.portal.certificate_login.new_challenge()
    found = system.portal.certificate_login.with_signature(picked.certificate_pem, challenge,
                                                 token.sign("portal", challenge.encode()))
    assert found.serial == picked.serial
    # R6: the PIN changes on the token; the old one stops working, the new one works
    token.change_pin(soft_token.pin, "new-pin-4711")
    with pytest.raises(TokenError) as wrong:
        Token(soft_token.label, soft_token.pin, soft_token.module).objects()
    assert wrong.value.code == "token-pin-wrong"
    assert Token(soft_token.label, "new-pin-4711", soft_token.module).objects()
    with pytest.raises(TokenError) as short:
        token.change_pin("new-pin-4711", "12")
    assert short.value.code == "token-pin-too-short"
    system.close()



def test_unknown_token_and_module_are_clear_errors(soft_token: SoftToken) -> None:
    with pytest.raises(TokenError) as missing:
        Token("no-such-token", "1234", soft_token.module).objects()
    assert missing.value.code == "token-not-found"
    with pytest.raises(TokenError) as module:
        list_tokens("/nonexistent/libpkcs11.so")
    assert module.value.code == "token-module"
