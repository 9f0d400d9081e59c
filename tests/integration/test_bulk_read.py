"""Batches read their aggregates in one query: same answers as one-by-one reads, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

from eventsourcing.persistence import Tracking

from adapters.client import softtoken
from ca_core.certificate import SigningRequest
from ca_core.messages import CertificateRequested
from tests.support import MODULE, USER, make_system


def test_bulk_reader_returns_what_select_events_returns(tmp_path: Path, database_url: str) -> None:
    system = make_system(tmp_path, database_url)
    try:
        reader = system.ca.bulk_reader
        assert reader is not None, "both stores have a bulk reader"
        authority_id = system.ca.authority().id
        absent = uuid4()
        found = reader([authority_id, absent])
        assert absent not in found
        assert list(found[authority_id]) == list(system.ca.recorder.select_events(authority_id))
    finally:
        system.close()


def _request(request_id: UUID, key: softtoken.UserKey, user: str) -> CertificateRequested:
    return CertificateRequested(message_id=str(uuid4()), occurred_at=datetime.now(UTC),
                                request_id=request_id, user_id=user, module=MODULE,
                                csr_pem=softtoken.make_csr(key, user), renews_serial=None)


def test_a_batch_sees_its_own_changes_and_the_store(tmp_path: Path, database_url: str) -> None:
    """Within one prefetched batch: a duplicate is recognised, a key reused by another user is
    refused; a later batch sees the stored key record."""
    system = make_system(tmp_path, database_url)
    ca = system.ca
    try:
        key, other_key = softtoken.new_key(), softtoken.new_key()
        first, second, third = uuid4(), uuid4(), uuid4()
        ca.process_batch([_request(first, key, USER), _request(first, key, USER),
                          _request(second, key, "P24-000999")], Tracking("test:0", 3))
        ca.process_batch([_request(third, key, "P24-000777"),
                          _request(uuid4(), other_key, USER)], Tracking("test:0", 5))

        def decision(request_id: UUID) -> SigningRequest:
            return ca.repository.get(SigningRequest.id_for(request_id))  # type: ignore[no-any-return]

        assert decision(first).serial is not None
        assert "another user" in (decision(second).rejection or "")
        assert "another user" in (decision(third).rejection or "")
        assert len(ca.recorder.select_events(SigningRequest.id_for(first))) == 1
    finally:
        system.close()
