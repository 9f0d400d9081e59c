"""The full CRL: signed from the status view, numbered by CrlPublished events, judged by OpenSSL."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from adapters.storage.persistence import status_view
from ca_core.authority import Authority
from ca_core.crl import RevokedEntry
from ca_core.eventmodel import all_events
from projections.feed import catch_up
from projections.status import RevocationStatusProjection
from tests.support import START, enroll, make_system, register


def openssl_verify(tmp: Path, cert_pem: str, at: int) -> subprocess.CompletedProcess[str]:
    (tmp / "leaf.pem").write_text(cert_pem)
    return subprocess.run(
        ["openssl", "verify", "-crl_check", "-attime", str(at), "-CRLfile", str(tmp / "crl.der"),
         "-CAfile", str(tmp / "root.pem"), "-untrusted", str(tmp / "issuing.pem"),
         str(tmp / "leaf.pem")], capture_output=True, text=True)


def test_r9_openssl_rejects_a_revoked_certificate_with_our_crl(tmp_path: Path) -> None:
    system = make_system(tmp_path / "data")
    register(system)
    good, bad = enroll(system), enroll(system)
    system.ca.revoke(bad.picked.serial, "keyCompromise", operator="ops-anna")
    projection = RevocationStatusProjection(status_view("", tmp_path / "data"))
    catch_up(projection, system.ca)
    entries = [RevokedEntry(r.serial, r.changed_at or r.not_before, r.reason or "unspecified")
               for r in projection.view.rows() if r.status == "revoked"]
    position = projection.view.max_tracking_id("ca") or 0
    der = system.ca.crls.publish_crl(entries, position)
    authority = system.ca.authority()
    (tmp_path / "root.pem").write_text(authority.root_certificate_pem)
    (tmp_path / "issuing.pem").write_text(authority.issuing_certificate_pem)
    (tmp_path / "crl.der").write_bytes(der)
    crl = x509.load_der_x509_crl(der)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert crl.next_update_utc and crl.next_update_utc - crl.last_update_utc <= timedelta(days=7)
    at = int((START + timedelta(hours=1)).timestamp())
    refused = openssl_verify(tmp_path, bad.picked.certificate_pem, at)
    assert refused.returncode != 0 and "revoked" in (refused.stdout + refused.stderr)
    accepted = openssl_verify(tmp_path, good.picked.certificate_pem, at)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    # the next CRL has the next number, and each CrlPublished names the log position it reflects
    system.ca.crls.publish_crl(entries, position)
    published = [e for _, e in all_events(system.ca) if isinstance(e, Authority.CrlPublished)]
    assert [(e.crl_number, e.log_position, e.revoked_count) for e in published] == [
        (1, position, 1), (2, position, 1)]
    system.close()


def test_crl_publishers_and_ocsp_signer_rotation_in_several_processes_share_the_authority(
        tmp_path: Path) -> None:
    """The CRL role and the OCSP role both record on the Authority: a conflict is re-read and
    retried (seen when both roles start at once), so every CRL number is used exactly once."""
    import threading
    from datetime import UTC, datetime

    from adapters.entrypoints.bootstrap import build_ca
    from ca_core.clock import SystemClock

    system = make_system(tmp_path / "data", start=datetime.now(UTC))
    system.close()
    cas = [build_ca(system.settings, SystemClock(), "test passphrase for keys") for _ in range(3)]
    errors: list[BaseException] = []

    def work(ca: object, signer: bool) -> None:
        try:
            for _ in range(8):
                if signer:
                    ca.ocsp.signer(renew_before=timedelta(days=29, hours=23, minutes=59))  # type: ignore[attr-defined]
                else:
                    ca.crls.publish_crl([], 0)  # type: ignore[attr-defined]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ca, i == 0)) for i, ca in enumerate(cas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = [e.crl_number for _, e in all_events(cas[1]) if isinstance(e, Authority.CrlPublished)]
    assert sorted(numbers) == list(range(1, 17))
    for ca in cas:
        ca.close()


def test_a_crl_number_taken_by_another_process_is_signed_again_with_the_next(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Two CA processes share the Authority: when the other records its CRL between our read
    and our save, ours is refused by the store (IntegrityError), read again and signed with
    the number after theirs (tenacity's retry in ``on_conflict``)."""
    ours = make_system(tmp_path / "data")
    theirs = make_system(tmp_path / "data", initialise=False)
    read = ours.ca.authority
    reads = 0

    def read_then_lose_the_race() -> Authority:
        nonlocal reads
        found = read()
        reads += 1
        if reads == 1:
            theirs.ca.crls.publish_crl([], 0)  # CRL number 1 is theirs now
        return found

    monkeypatch.setattr(ours.ca, "authority", read_then_lose_the_race)
    der = ours.ca.crls.publish_crl([], 0)
    number = x509.load_der_x509_crl(der).extensions.get_extension_for_class(x509.CRLNumber)
    assert number.value.crl_number == 2 and reads >= 2
