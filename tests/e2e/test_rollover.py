"""Issuing-CA rollover (issue 17), judged by openssl, nginx and curl: certificates of the old
and the new issuing CA verify with the chain the portal hands out; the old CA's certificate
revoked after the rollover is revoked in the old CA's CRL and OCSP answer and nginx refuses it;
the new one is good; `partner-ca audit at` tells which issuing CA was current when."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import PartnerCa, chain_from_file
from adapters.entrypoints.ca_wiring import ca_publishing, crl_publisher, ocsp_publisher_of
from adapters.entrypoints.relying_wiring import responder_of
from adapters.relying.ocsp_http import OcspAsgi
from ca_core.authority import Authority
from ca_core.eventmodel import all_events
from tests.support import (
    PASSPHRASE,
    Enrolled,
    HttpServer,
    advance,
    enroll,
    listener,
    make_system,
    register,
)

ROOT = Path(__file__).resolve().parents[2]
OLD_GOOD, OLD_REVOKED, NEW = "P24-000301", "P24-000302", "P24-000303"


def _cli(data: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(data), "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE,
           **extra}
    for name in ("PARTNER_CA_DATABASE_URL", "PARTNER_CA_KAFKA_BOOTSTRAP"):
        env.pop(name, None)
    done = subprocess.run(["partner-ca", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


@pytest.fixture
def rolled_over(tmp_path: Path) -> Iterator[tuple[PartnerCa, dict[str, Enrolled], HttpServer,
                                                  datetime]]:
    """Two certificates of the first issuing CA, `partner-ca ca rollover` while the CA is
    running, one certificate of the new issuing CA, then one of the old ones revoked."""
    ocsp_socket = listener()
    server: HttpServer | None = None
    system = make_system(tmp_path / "data", start=datetime.now(UTC) - timedelta(hours=1))
    try:
        for user in (OLD_GOOD, OLD_REVOKED, NEW):
            register(system, user)
        enrolled = {user: enroll(system, user) for user in (OLD_GOOD, OLD_REVOKED)}
        before = system.clock.now()
        # another process (ops at the CLI) rolls over; the clocks agree on the moment
        moment = before + timedelta(seconds=1)
        rolled = json.loads(_cli(tmp_path / "data", "ca", "rollover", "--json",
                                 PARTNER_CA_NOW=moment.isoformat()).stdout)
        assert (rolled["generation"], rolled["previous"]) == (1, 0)
        advance(system, timedelta(seconds=2))
        enrolled[NEW] = enroll(system, NEW)  # the running CA follows at its next batch
        system.ca.revoke(enrolled[OLD_REVOKED].picked.serial, "keyCompromise", "ops-anna")
        app = OcspAsgi(responder_of(system.ca, system.settings), poll_seconds=3600)
        server = HttpServer(app)
        ocsp_publisher_of(system.ca, system.settings).step()
        app.sync()
        crl_publisher(system.ca, system.settings).publish()
        yield system, enrolled, server, before
    finally:
        if server is not None:
            server.close()
        ocsp_socket.close()
        system.close()


def _issuer_cn(pem: str) -> str:
    return str(x509.load_pem_x509_certificate(pem.encode()).issuer.rfc4514_string())


def test_both_issuing_cas_answer_for_their_certificates(
        tmp_path: Path, rolled_over: tuple[PartnerCa, dict[str, Enrolled], HttpServer,
                                           datetime]) -> None:
    system, enrolled, server, before = rolled_over
    data = tmp_path / "data"
    authority = system.ca.authority()
    assert authority.current == 1 and [ca.generation for ca in authority.active()] == [1, 0]
    old, new = authority.issuing[0], authority.issuing[1]
    assert "CN=Partner CA Issuing," in _issuer_cn(enrolled[OLD_GOOD].picked.certificate_pem)
    assert "CN=Partner CA Issuing 2," in _issuer_cn(enrolled[NEW].picked.certificate_pem)
    rotated = [e for _, e in all_events(system.ca) if isinstance(e, Authority.SigningKeyRotated)]
    assert len(rotated) == 1 and rotated[0].key_id == new.key_id and rotated[0].previous == 0

    # the chain the portal hands out (download and ca-chain.pem) has both issuing CAs
    chain = tmp_path / "chain.pem"
    chain.write_text(system.portal.chain().chain_pem)
    assert chain_from_file(system.settings.chain_path).issuing_pems == (
        new.certificate_pem, old.certificate_pem)
    root = tmp_path / "root.pem"
    root.write_text(authority.root_certificate_pem)
    crls = [data / "crl" / "issuing.crl", data / "crl" / "issuing-g1.crl"]
    for user, pem in ((u, e.picked.certificate_pem) for u, e in enrolled.items()):
        leaf = tmp_path / f"{user}.pem"
        leaf.write_text(pem)
        assert ": OK" in _run("openssl", "verify", "-CAfile", str(root), "-untrusted",
                              str(chain), str(leaf))
        checked = _run("openssl", "verify", "-crl_check", "-CAfile", str(root), "-untrusted",
                       str(chain), *(a for c in crls for a in ("-CRLfile", str(c))), str(leaf))
        if user == OLD_REVOKED:
            assert "certificate revoked" in checked, checked
        else:
            assert ": OK" in checked, checked
        # each certificate's own pickup chain verifies it too
        own = tmp_path / f"{user}-chain.pem"
        own.write_text(enrolled[user].picked.chain_pem)
        assert ": OK" in _run("openssl", "verify", "-CAfile", str(root), "-untrusted",
                              str(own), str(leaf))

    # each CRL is signed by its own issuing CA and lists only its own revocations
    old_crl = x509.load_der_x509_crl(crls[0].read_bytes())
    new_crl = x509.load_der_x509_crl(crls[1].read_bytes())
    assert old_crl.is_signature_valid(x509.load_pem_x509_certificate(
        old.certificate_pem.encode()).public_key())
    assert new_crl.is_signature_valid(x509.load_pem_x509_certificate(
        new.certificate_pem.encode()).public_key())
    assert [format(r.serial_number, "X") for r in old_crl] == [
        enrolled[OLD_REVOKED].picked.serial.lstrip("0")]
    assert list(new_crl) == []
    # the new CA's certificates name its own CRL
    points = x509.load_pem_x509_certificate(enrolled[NEW].picked.certificate_pem.encode()
                                            ).extensions.get_extension_for_class(
        x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value.endswith("/crl/issuing-g1.crl")

    # OCSP, judged by openssl: each CA answers for its own certificates (issuer key hash)
    issuers = {0: tmp_path / "old.pem", 1: tmp_path / "new.pem"}
    issuers[0].write_text(old.certificate_pem)
    issuers[1].write_text(new.certificate_pem)

    def ocsp(user: str, generation: int) -> str:
        return _run("openssl", "ocsp", "-issuer", str(issuers[generation]), "-cert",
                    str(tmp_path / f"{user}.pem"), "-CAfile", str(chain), "-url",
                    f"{server.url}/ocsp", "-no_nonce")

    assert f"{tmp_path / (OLD_GOOD + '.pem')}: good" in ocsp(OLD_GOOD, 0)
    assert ": revoked" in ocsp(OLD_REVOKED, 0) and "Reason: keyCompromise" in ocsp(OLD_REVOKED, 0)
    assert ": good" in ocsp(NEW, 1)
    assert "unauthorized" in ocsp(NEW, 0).lower()  # asked of the wrong issuing CA
    assert "unauthorized" in ocsp(OLD_GOOD, 1).lower()

    # audit at: which issuing CA was current when
    at_before = json.loads(_cli(data, "audit", "at", before.isoformat(), "--json").stdout)
    at_now = json.loads(_cli(data, "audit", "at", datetime.now(UTC).isoformat(), "--serial",
                             enrolled[OLD_REVOKED].picked.serial, "--json").stdout)
    assert at_before["issuing_ca_current"] == 0
    assert (at_now["issuing_ca_current"], at_now["issued_by_ca"], at_now["status"]) == (
        1, 0, "revoked")
    listed = json.loads(_cli(data, "ca", "list", "--json").stdout)
    assert [(r["generation"], r["state"]) for r in listed] == [(0, "answering"), (1, "current")]


def test_nginx_trusts_both_and_refuses_the_revoked_one(
        tmp_path: Path, rolled_over: tuple[PartnerCa, dict[str, Enrolled], HttpServer,
                                           datetime]) -> None:
    system, enrolled, server, _ = rolled_over
    run = tmp_path / "nginx"
    started = subprocess.run(["bash", str(ROOT / "deploy/nginx/start.sh"), str(run),
                              f"unix:{run / 'https.sock'}", str(system.settings.chain_path),
                              f"{server.url}/ocsp"], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    try:
        for user, expected in ((OLD_GOOD, "200"), (NEW, "200"), (OLD_REVOKED, "400")):
            (tmp_path / f"{user}.pem").write_text(enrolled[user].picked.certificate_pem)
            (tmp_path / f"{user}.key").write_text(softtoken.key_pem(enrolled[user].key))
            done = subprocess.run(
                ["curl", "-s", "-k", "-o", "-", "-w", "\n%{http_code}", "--cert",
                 str(tmp_path / f"{user}.pem"), "--key", str(tmp_path / f"{user}.key"),
                 "--unix-socket", str(run / "https.sock"), "https://127.0.0.1/"],
                capture_output=True, text=True, timeout=60)
            assert done.stdout.endswith(f"\n{expected}"), (user, done.stdout, done.stderr)
        assert "revoked" in (run / "error.log").read_text()
    finally:
        subprocess.run(["bash", str(ROOT / "deploy/nginx/stop.sh"), str(run)],
                       capture_output=True)


def test_the_old_ca_retires_when_its_last_certificate_has_expired(
        tmp_path: Path, rolled_over: tuple[PartnerCa, dict[str, Enrolled], HttpServer,
                                           datetime]) -> None:
    system, enrolled, _server, _ = rolled_over
    publishing = ca_publishing(system.ca, system.settings)
    publishing.step()
    assert system.ca.hierarchy.retire_due() == []  # its certificates are still valid
    last = max(x509.load_pem_x509_certificate(enrolled[u].picked.certificate_pem.encode())
               .not_valid_after_utc for u in (OLD_GOOD, OLD_REVOKED))
    advance(system, last - system.clock.now() + timedelta(minutes=1))
    system.ca.expire_due()
    publishing.step()  # renews the signers and CRLs, then retires the old CA
    authority = system.ca.authority()
    assert authority.issuing[0].retired_at is not None
    assert [ca.generation for ca in authority.active()] == [1]
    retired = [e for _, e in all_events(system.ca) if isinstance(e, Authority.IssuingCaRetired)]
    assert [(e.generation, e.last_expiry) for e in retired] == [(0, last)]
    # its OCSP answers are gone (never "good" again), the new CA's are there
    store = publishing.ocsp.store
    assert store.get(enrolled[OLD_GOOD].picked.serial) is None
    assert store.get(enrolled[NEW].picked.serial) is not None
    assert system.ca.hierarchy.chain_pem().count("BEGIN CERTIFICATE") == 2  # new issuing + root
