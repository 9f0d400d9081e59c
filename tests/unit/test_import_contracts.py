"""The boundaries between security contexts hold in CI (import-linter): a relying-party
module that imported the CA's key store would break the build."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lint() -> subprocess.CompletedProcess[str]:
    return subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


#: (package the probe is put in, what it imports): each breaks one contract
VIOLATIONS = [
    ("adapters/relying", "from adapters.ca.keystore import FileKeyStore  # noqa: F401"),
    ("adapters/ca", "from adapters.relying.ocsp_http import OcspAsgi  # noqa: F401"),
    ("adapters/portal/pages", "from adapters.portal.api.schemas import OtpLogin  # noqa: F401"),
    ("adapters/portal/api", "from adapters.portal.pages.kit import PageKit  # noqa: F401"),
]


def test_the_contracts_hold_and_a_deliberate_violation_breaks_them() -> None:
    kept = lint()
    assert kept.returncode == 0, kept.stdout
    for package, line in VIOLATIONS:
        probe = ROOT / package / "_contract_probe.py"
        probe.write_text('"""A deliberate violation (tests/unit/test_import_contracts.py)."""\n'
                         f"{line}\n")
        try:
            broken = lint()
        finally:
            probe.unlink()
        assert broken.returncode != 0, line
        module = package.replace("/", ".") + "._contract_probe"
        assert "BROKEN" in broken.stdout and module in broken.stdout, broken.stdout
