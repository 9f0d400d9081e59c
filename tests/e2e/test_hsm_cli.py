"""`partner-ca init --key-store pkcs11` (the key ceremony on a SoftHSM2 token, each key named by
the token's serial and its CKA_ID), a rollover on the token, and a role that cannot reach its
key: one line, exit 3, nothing served."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import SoftToken


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["partner-ca", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_init_on_the_token_and_a_wrong_pin_stops_the_role(tmp_path: Path,
                                                          soft_token: SoftToken) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(soft_token.pin + "\n")
    pin_file.chmod(0o600)
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_HSM_MODULE": soft_token.module,
           "PARTNER_CA_HSM_TOKEN_LABEL": soft_token.label,
           "PARTNER_CA_HSM_PIN_FILE": str(pin_file), "SOFTHSM2_CONF": soft_token.conf}
    for name in ("PARTNER_CA_KEY_PASSPHRASE", "PARTNER_CA_DATABASE_URL",
                 "PARTNER_CA_KAFKA_BOOTSTRAP"):
        env.pop(name, None)
    done = _run(env, "init", "--key-store", "pkcs11", "--json")
    assert done.returncode == 0, done.stderr
    ceremony = json.loads(done.stdout)
    serial = soft_token_serial(ceremony["root_key_id"])
    assert ceremony["issuing_key_id"].startswith(f"pkcs11:{serial}:")
    assert ceremony["root_key_id"] != ceremony["issuing_key_id"]
    assert soft_token.pin not in done.stdout + done.stderr
    env["PARTNER_CA_KEY_STORE"] = "pkcs11"  # what the later commands and roles are given
    assert not (tmp_path / "data" / "keys").exists()  # nothing of the keys on disk
    shown = _run(env, "chain")
    assert shown.returncode == 0 and shown.stdout.count("BEGIN CERTIFICATE") == 2
    rolled = _run(env, "ca", "rollover", "--json")
    assert rolled.returncode == 0, rolled.stderr
    listed = json.loads(_run(env, "ca", "list", "--json").stdout)
    assert [(r["generation"], r["state"]) for r in listed] == [(0, "answering"), (1, "current")]
    assert [r["key_id"] for r in listed] == [ceremony["issuing_key_id"],
                                             json.loads(rolled.stdout)["key_id"]]
    assert listed[1]["key_id"].startswith(f"pkcs11:{serial}:")
    assert _run(env, "chain").stdout.count("BEGIN CERTIFICATE") == 3
    answers = _run(env, "ca", "sign-root-answers", "--days", "30", "--json")
    assert answers.returncode == 0, answers.stderr
    assert len(json.loads(answers.stdout)["issuing_cas"]) == 2  # the root speaks for both
    assert not (tmp_path / "data" / "keys").exists()
    pin_file.write_text("000000\n")
    refused = _run({**env, "PARTNER_CA_PORTAL_LISTEN": ""}, "serve", "--role", "ca")
    assert refused.returncode == 3, refused.stderr
    assert "hsm-pin-wrong" in refused.stderr and refused.stderr.count("\n") == 1
    assert "000000" not in refused.stderr
    pin_file.chmod(0o644)  # issue 26 item 10: readable by others is refused, not used
    exposed = _run({**env, "PARTNER_CA_PORTAL_LISTEN": ""}, "serve", "--role", "ca")
    assert exposed.returncode == 3, exposed.stderr
    assert "pin-file-exposed" in exposed.stderr and "chmod 600" in exposed.stderr


def soft_token_serial(key_id: str) -> str:
    """The token serial of a ``pkcs11:<serial>:<CKA_ID hex>`` key id."""
    scheme, serial, cka_id = key_id.split(":")
    assert scheme == "pkcs11" and serial and int(cka_id, 16) >= 0
    return serial
