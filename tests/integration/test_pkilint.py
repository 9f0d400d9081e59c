"""pkilint as an independent judge: no ERROR or FATAL finding on anything we sign."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ca_core.crl import RevokedEntry
from tests.support import enroll, make_system, register


def lint(*command: str) -> str:
    done = subprocess.run([*command[:2], "-s", "ERROR", *command[2:]], capture_output=True,
                          text=True)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pki")
    system = make_system(tmp / "data")
    register(system)
    me = enroll(system)
    system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops")
    certificate = system.ca.certificate(me.picked.serial)
    der = system.ca.crls.publish_crl(
        [RevokedEntry(me.picked.serial, certificate.revoked_at or certificate.not_before,
                      "keyCompromise")], log_position=1)
    authority = system.ca.authority()
    (tmp / "root.pem").write_text(authority.root_certificate_pem)
    (tmp / "issuing.pem").write_text(authority.issuing_certificate_pem)
    (tmp / "leaf.pem").write_text(me.picked.certificate_pem)
    (tmp / "issuing.crl").write_bytes(der)
    system.close()
    return tmp


@pytest.mark.parametrize("name", ["root.pem", "issuing.pem", "leaf.pem"])
def test_certificates_have_no_error_findings(artefacts: Path, name: str) -> None:
    assert lint("lint_pkix_cert", "lint", str(artefacts / name)) == ""


@pytest.mark.parametrize(("issuer", "subject"), [("root.pem", "issuing.pem"),
                                                 ("issuing.pem", "leaf.pem")])
def test_chain_has_no_error_findings(artefacts: Path, issuer: str, subject: str) -> None:
    assert lint("lint_pkix_signer_signee_cert_chain", "lint", str(artefacts / issuer),
                str(artefacts / subject)) == ""


def test_crl_has_no_error_findings(artefacts: Path) -> None:
    assert lint("lint_crl", "lint", "-t", "CRL", "-p", "PKIX",
                str(artefacts / "issuing.crl")) == ""
