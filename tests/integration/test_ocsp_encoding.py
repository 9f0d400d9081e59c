"""The OCSP responses the CA pre-signs are assembled from a per-signer DER template
(ca_core/ocsp.py, ``_signed_fast``) for speed. This is its contract: for every kind of
answer the to-be-signed bytes are exactly those cryptography's OCSPResponseBuilder makes,
and the whole response parses to the same fields. A cryptography upgrade that changes its
encoding fails here."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from ca_core.ocsp import Answer, _signed_by_builder, sign_response
from tests.support import enroll, make_system, register


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
@pytest.mark.parametrize("kind", ["good", "revoked", "revoked-unspecified", "nonce"])
def test_fast_responses_are_the_builders_byte_for_byte(tmp_path: Path, algorithm: str,
                                                       kind: str) -> None:
    system = make_system(tmp_path / "data")
    register(system)
    me = enroll(system)
    signer = system.ca.ocsp.signer()
    now = system.clock.now()
    answer = {"good": Answer(me.picked.serial, "good"),
              "revoked": Answer(me.picked.serial, "revoked", now - timedelta(hours=1),
                                "keyCompromise"),
              "revoked-unspecified": Answer(me.picked.serial, "revoked", now, "unspecified"),
              "nonce": Answer(me.picked.serial, "good")}[kind]
    nonce = b"\x01" * 16 if kind == "nonce" else None
    fast = ocsp.load_der_ocsp_response(
        sign_response(signer, answer, algorithm, now, timedelta(hours=12), nonce))
    reference = ocsp.load_der_ocsp_response(
        _signed_by_builder(signer, answer, algorithm, now, timedelta(hours=12), nonce))
    # identical but for producedAt: the builder takes the wall clock, we the CA's clock (the
    # time the answer is about; the test clock is in January)
    ours, theirs = fast.tbs_response_bytes, reference.tbs_response_bytes
    at = theirs.index(b"\x18\x0f")  # producedAt, right after the responder id
    assert ours[:at] == theirs[:at] and ours[at + 17:] == theirs[at + 17:]
    assert fast.produced_at_utc == now.replace(microsecond=0)
    assert fast.signature_algorithm_oid == reference.signature_algorithm_oid
    assert [c.serial_number for c in fast.certificates] == [
        c.serial_number for c in reference.certificates]
    signer.key.public_key().verify(fast.signature, fast.tbs_response_bytes,  # type: ignore[call-arg]
                                   ec.ECDSA(fast.signature_hash_algorithm))
    system.close()
