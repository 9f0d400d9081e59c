"""Status view, OCSP answers and the CRL agree after every revocation of a randomised history;
the OCSP response store rebuilt from position 0 equals the live one."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from adapters.entrypoints.ca_wiring import crl_publisher, ocsp_publisher_of
from adapters.entrypoints.relying_wiring import responder_of
from adapters.relying.ocsp_http import OcspResponder
from ca_core.certificate import REVOCATION_REASONS
from ca_core.clock import ManualClock
from projections.feed import catch_up
from projections.ocsp import StoredResponse
from tests.support import enroll, make_system, register

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def ocsp_status(responder: OcspResponder, cert_pem: str, issuer_pem: str) -> str:
    request = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_pem_x509_certificate(cert_pem.encode()),
        x509.load_pem_x509_certificate(issuer_pem.encode()), hashes.SHA256()).build()
    reply = responder.answer(request.public_bytes(serialization.Encoding.DER))
    response = ocsp.load_der_ocsp_response(reply.body)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return response.certificate_status.name.lower()


def comparable(rows: list[StoredResponse]) -> list[tuple[object, ...]]:
    return [(r.serial, r.status, r.reason, r.revoked_at, r.cause_position) for r in rows]


def test_randomised_history_status_ocsp_and_crl_agree(tmp_path: Path, database_url: str) -> None:
    system = make_system(tmp_path / "data", database_url, start=NOW)
    clock = system.clock
    assert isinstance(clock, ManualClock)
    responder = responder_of(system.ca, system.settings)
    publisher = crl_publisher(system.ca, system.settings)
    issuer = system.ca.authority().issuing_certificate_pem
    rng = random.Random(4711)
    users = [f"P24-{n:06d}" for n in range(6)]
    for user in users:
        register(system, user)
    issued: dict[str, str] = {}  # serial → PEM
    revocations = 0
    for _ in range(40):
        action = rng.choices(["issue", "revoke", "expire"], weights=[5, 3, 1])[0]
        good = [s for s in issued if system.ca.status_of(s) == "good"]
        if action == "issue" or not good:
            me = enroll(system, rng.choice(users))
            issued[me.picked.serial] = me.picked.certificate_pem
            continue
        if action == "expire":
            clock.advance(timedelta(days=rng.randint(20, 120)))
            system.ca.expire_due()
            continue
        system.ca.revoke(rng.choice(good), rng.choice(REVOCATION_REASONS), operator="ops")
        revocations += 1
        ocsp_publisher_of(system.ca, system.settings).step()
        crl = x509.load_der_x509_crl(publisher.publish().crls.full)
        for serial, pem in issued.items():
            row = publisher.status.view.get(serial)
            assert row is not None
            in_crl = crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
            answer = ocsp_status(responder, pem, issuer)
            assert (row.status == "revoked") == in_crl == (answer == "revoked"), (
                serial, row.status, in_crl, answer)
            if row.status == "revoked":
                entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
                assert row.changed_at is not None and entry is not None
                assert entry.revocation_date_utc == row.changed_at.replace(microsecond=0)
    assert revocations >= 5, "the sequence exercised revocations"

    ocsp_publisher_of(system.ca, system.settings).step()
    live = comparable(responder.store.rows())
    if database_url:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM ocsp_responses")
            conn.execute("DROP TABLE ocsp_responses_tracking")  # eventsourcing recreates it
        rebuilt_responder = responder_of(system.ca, system.settings)
    else:
        system.settings.data_dir = tmp_path / "rebuilt"
        rebuilt_responder = responder_of(system.ca, system.settings)
    assert rebuilt_responder.store.rows() == []
    catch_up(rebuilt_responder.projection, system.ca)
    assert comparable(rebuilt_responder.store.rows()) == live
    system.close()
