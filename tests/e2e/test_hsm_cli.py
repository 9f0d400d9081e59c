"""`partner-ca init` with the CA keys on a SoftHSM2 token, and a role that cannot reach its
key: one line, exit 3, nothing served."""

from __future__ import annotations

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
           "PARTNER_CA_KEY_STORE": "pkcs11", "PARTNER_CA_HSM_MODULE": soft_token.module,
           "PARTNER_CA_HSM_TOKEN_LABEL": soft_token.label,
           "PARTNER_CA_HSM_PIN_FILE": str(pin_file), "SOFTHSM2_CONF": soft_token.conf}
    for name in ("PARTNER_CA_KEY_PASSPHRASE", "PARTNER_CA_DATABASE_URL",
                 "PARTNER_CA_KAFKA_BOOTSTRAP"):
        env.pop(name, None)
    done = _run(env, "init", "--json")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "data" / "keys").exists()  # nothing of the keys on disk
    shown = _run(env, "chain")
    assert shown.returncode == 0 and shown.stdout.count("BEGIN CERTIFICATE") == 2
    pin_file.write_text("000000\n")
    refused = _run({**env, "PARTNER_CA_PORTAL_LISTEN": ""}, "serve", "--role", "ca")
    assert refused.returncode == 3, refused.stderr
    assert "hsm-pin-wrong" in refused.stderr and refused.stderr.count("\n") == 1
    assert "000000" not in refused.stderr
