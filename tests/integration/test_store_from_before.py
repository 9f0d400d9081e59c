"""A store written before issue 14 (tests/fixtures/store-before-issue-14) replays, verifies and
opens unchanged with today's code: events, tree heads, views rebuilt, the old key files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-before-issue-14"
SERIAL = "73103F3FB32CFA175E9F16882835AB7F"


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(data),
           "PARTNER_CA_KEY_PASSPHRASE": "fixture store passphrase",
           "PARTNER_CA_NOW": "2026-12-01T11:00:00Z"}
    for name in ("PARTNER_CA_DATABASE_URL", "PARTNER_CA_KAFKA_BOOTSTRAP"):
        env.pop(name, None)
    done = subprocess.run(["partner-ca", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def test_the_store_from_before_replays_verifies_and_opens(tmp_path: Path) -> None:
    data = tmp_path / "store"
    shutil.copytree(FIXTURE / "store", data)
    history = [json.loads(line) for line in _cli(data, "audit", "history", "--user",
                                                  "P24-000123", "--json").stdout.splitlines()]
    expected = [json.loads(line) for line in (FIXTURE / "history.jsonl").read_text()
                .splitlines()]
    assert history == expected
    verified = [json.loads(line) for line in _cli(data, "audit", "verify",
                                                  "--json").stdout.splitlines()]
    assert [v["intact"] for v in verified] == [True, True] and all(v["covered"] for v in verified)
    status = json.loads(_cli(data, "status", SERIAL, "--json").stdout)  # view rebuilt from 0
    assert (status["status"], status["reason"], status["changed_by"]) == (
        "revoked", "keyCompromise", "operator:ops-anna")
    crl = json.loads(_cli(data, "crl", "--json").stdout)  # the old key files open
    assert crl["crl_number"] == 2 and crl["revoked"] == 1
    assert json.loads(_cli(data, "audit", "replay", "--json").stdout)["differences"] == []
