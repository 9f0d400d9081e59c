"""R3's key registry on the CA side: a public key is certified to one user only, never again
after a key-compromise revocation, and a new key is registered with its first certification
in one event — also when two requests of one batch bring the same new key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

from eventsourcing.persistence import Tracking

from adapters.client import softtoken
from ca_core.certificate import PublicKeyRecord, SigningRequest
from ca_core.keypolicy import csr_fingerprint
from ca_core.messages import CertificateRequested
from tests.support import make_system


def _request(key: softtoken.UserKey, user: str) -> CertificateRequested:
    request_id = uuid4()
    return CertificateRequested(message_id=f"m-{request_id}", occurred_at=datetime.now(UTC),
                                request_id=request_id, user_id=user, module="EPAK",
                                csr_pem=softtoken.make_csr(key, user), renews_serial=None)


def _outcome(system: object, request_id: UUID) -> str:
    decided = system.ca.repository.get(SigningRequest.id_for(request_id))  # type: ignore[attr-defined]
    return "issued" if decided.rejection is None else decided.rejection


def test_a_key_belongs_to_one_user(tmp_path: Path, database_url: str) -> None:
    system = make_system(tmp_path / "data", database_url)
    key, other_key = softtoken.new_key(), softtoken.new_key()
    first, same_batch = _request(key, "P24-0001"), _request(key, "P24-0002")
    system.ca.process_batch([first, same_batch], Tracking("test", 1))
    assert _outcome(system, first.request_id) == "issued"
    assert "already certified to another user" in _outcome(system, same_batch.request_id)
    fingerprint = csr_fingerprint(first.csr_pem)
    assert fingerprint is not None
    stored = system.ca.repository.get(PublicKeyRecord.id_for(fingerprint))
    assert stored.user_id == "P24-0001" and stored.version == 1  # one event for a new key

    again, later_other = _request(key, "P24-0001"), _request(key, "P24-0003")
    fresh = _request(other_key, "P24-0003")
    system.ca.process_batch([again, later_other, fresh], Tracking("test", 2))
    assert _outcome(system, again.request_id) == "issued"  # the same user may use it again
    assert "already certified to another user" in _outcome(system, later_other.request_id)
    assert _outcome(system, fresh.request_id) == "issued"
    assert system.ca.repository.get(PublicKeyRecord.id_for(fingerprint)).version == 2

    serial = system.ca.repository.get(SigningRequest.id_for(first.request_id)).serial
    system.ca.revoke(serial, "keyCompromise", operator="ops")
    after = _request(key, "P24-0001")
    system.ca.process_batch([after], Tracking("test", 3))
    assert "key compromise" in _outcome(system, after.request_id)
    system.close()
