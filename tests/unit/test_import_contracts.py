"""The boundaries between security contexts hold in CI (import-linter): a relying-party
module that imported the CA's key store would break the build."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lint() -> subprocess.CompletedProcess[str]:
    return subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_the_contracts_hold_and_a_deliberate_violation_breaks_them() -> None:
    kept = lint()
    assert kept.returncode == 0, kept.stdout
    probe = ROOT / "adapters" / "relying" / "_contract_probe.py"
    probe.write_text('"""A deliberate violation (tests/unit/test_import_contracts.py)."""\n'
                     "from adapters.ca.keystore import FileKeyStore  # noqa: F401\n")
    try:
        broken = lint()
    finally:
        probe.unlink()
    assert broken.returncode != 0
    assert "BROKEN" in broken.stdout and "adapters.relying._contract_probe" in broken.stdout
