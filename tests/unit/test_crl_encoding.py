"""The hand-spliced CRL: cryptography and openssl read back exactly the entries we put in."""

from __future__ import annotations

import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from ca_core.crl import REASON_CODES, RevokedEntry, build_crl
from ca_core.policy import IssuancePolicy
from ca_core.x509profile import build_issuing, build_root, ca_name

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def issuer() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    root_key, key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP256R1())
    root = build_root(root_key, ca_name("Root", "Org", "CZ"), NOW)
    return key, build_issuing(root_key, root, key, ca_name("Issuing", "Org", "CZ"), NOW,
                              IssuancePolicy())


def entries(n: int, seed: int = 1) -> list[RevokedEntry]:
    rng = random.Random(seed)
    reasons = list(REASON_CODES)
    serials = [1, 127, 128, 255, 256, 2**127, 2**159 - 1] + [rng.getrandbits(126) | 1 << 125
                                                            for _ in range(n)]
    return [RevokedEntry(format(s, "X"), NOW - timedelta(seconds=rng.randrange(10**8)),
                         reasons[i % len(reasons)]) for i, s in enumerate(serials)]


@pytest.mark.parametrize("count", [0, 1, 300])
def test_cryptography_reads_back_every_entry(
        issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], count: int) -> None:
    key, cert = issuer
    given = entries(count)[:count]
    crl = x509.load_der_x509_crl(build_crl(key, cert, given, 42, NOW, timedelta(hours=24)))
    assert crl.is_signature_valid(cert.public_key())
    assert crl.last_update_utc == NOW and crl.next_update_utc == NOW + timedelta(hours=24)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    assert crl.issuer == cert.subject
    assert len(crl) == len(given)
    for entry in given:
        found = crl.get_revoked_certificate_by_serial_number(int(entry.serial, 16))
        assert found is not None
        assert found.revocation_date_utc == entry.revoked_at.replace(microsecond=0)
        reasons = [e.value.reason for e in found.extensions]
        assert reasons == ([] if entry.reason == "unspecified"
                           else [x509.ReasonFlags(entry.reason)])


def test_openssl_parses_a_large_crl(tmp_path: Path,
                                    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
                                    ) -> None:
    key, cert = issuer
    given = entries(20_000, seed=2)
    (tmp_path / "crl.der").write_bytes(build_crl(key, cert, given, 7, NOW))
    (tmp_path / "issuing.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    done = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"),
                           "-noout", "-text", "-CAfile", str(tmp_path / "issuing.pem")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "verify OK" in done.stderr + done.stdout
    assert done.stdout.count("Serial Number:") == len(given)


def test_dates_after_2049_are_generalized_time(
        issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> None:
    key, cert = issuer
    late = RevokedEntry("ABCDEF", datetime(2051, 1, 2, 3, 4, 5, tzinfo=UTC), "superseded")
    crl = x509.load_der_x509_crl(build_crl(key, cert, [late], 1, NOW))
    found = crl.get_revoked_certificate_by_serial_number(0xABCDEF)
    assert found is not None and found.revocation_date_utc == late.revoked_at
