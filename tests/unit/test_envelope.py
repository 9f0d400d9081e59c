"""CloudEvents envelope (Kafka binding, binary mode) and the published JSON Schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import jsonschema
import orjson
import pytest

from adapters.transport.kafka.envelope import MalformedMessage, decode, encode
from adapters.transport.kafka.schemas import OUT, render, schemas
from ca_core import messages as m

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EXAMPLES: list[m.Message] = [
    m.CertificateRequested(message_id="a:1", occurred_at=NOW, request_id=uuid4(), user_id="u",
                           module="EPAK", csr_pem="-----BEGIN…", renews_serial=None),
    m.RevocationRequested(message_id="a:2", occurred_at=NOW, serial="0A", reason="superseded",
                          requested_by="portal:renewal"),
    m.CertificateIssued(message_id="b:1", occurred_at=NOW, request_id=uuid4(), serial="0A",
                        user_id="u", module="EPAK", not_before=NOW, not_after=NOW,
                        certificate_pem="-----BEGIN…"),
    m.CsrRejected(message_id="b:2", occurred_at=NOW, request_id=uuid4(), code="key-weak",
                  reason="weak"),
    m.CertificateRevoked(message_id="b:3", occurred_at=NOW, serial="0A", reason="keyCompromise",
                         revoked_at=NOW, revoked_by="user:u", request_id=uuid4()),
    m.CertificateExpired(message_id="b:4", occurred_at=NOW, serial="0A", not_after=NOW,
                         request_id=uuid4()),
    m.OtpIssued(message_id="c:1:fact", occurred_at=NOW, user_id="u", module="EPAK",
                issued_by="adm", expires_at=NOW),
    m.OtpLocked(message_id="c:5:fact", occurred_at=NOW, user_id="u", module="EPAK", attempts=5),
    m.RequestSubmitted(message_id="d:1:fact", occurred_at=NOW, request_id=uuid4(), user_id="u",
                       module="EPAK", kind="new"),
    m.CertificatePickedUp(message_id="d:3:fact", occurred_at=NOW, request_id=uuid4(),
                          serial="0A", via="link"),
    m.TreeHeadSigned(message_id="e:2", occurred_at=NOW, application="ca", tree_size=42,
                     previous_size=17, root_hash="ab" * 32, leaf_prefixes_sha256="cd" * 32,
                     key_fingerprint="ef" * 32, signature="3045"),
]


def test_every_message_type_has_an_example() -> None:
    assert {e.type for e in EXAMPLES} == set(m.MESSAGE_TYPES)


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda e: e.type)
def test_roundtrip_and_cloudevents_headers(message: m.Message) -> None:
    key, value, headers = encode(message, "/partner-ca/test")
    h = dict(headers)
    assert h["ce_specversion"] == b"1.0"
    assert h["ce_id"] == message.message_id.encode()
    assert h["ce_type"] == f"cz.partner-ca.{message.type}.v1".encode()
    assert h["content-type"] == b"application/json"
    assert key == message.key.encode()
    assert decode(headers, value) == message


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda e: e.type)
def test_record_values_validate_against_the_published_schema(message: m.Message) -> None:
    _, value, _ = encode(message, "/partner-ca/test")
    schema = schemas()[f"{message.type}.v1.json"]
    jsonschema.validate(orjson.loads(value), schema)


def test_published_schemas_are_up_to_date() -> None:
    for name, schema in schemas().items():
        assert (OUT / name).read_text() == render(schema), (
            f"docs/events/{name} is stale: run python -m adapters.transport.kafka.schemas")


GOOD = [("ce_specversion", b"1.0"), ("ce_type", b"cz.partner-ca.RevocationRequested.v1"),
        ("ce_id", b"x"), ("ce_time", b"2026-01-01T00:00:00+00:00")]


@pytest.mark.parametrize(("headers", "value", "reason"), [
    (GOOD, b"{nope", "not JSON"),
    (GOOD, b"[1, 2]", "not a JSON object"),
    (GOOD, b'{"serial": "0A"}', "does not match its schema"),
    (GOOD, b'{"serial": "0A", "reason": "x", "requested_by": "y", "extra": 1}',
     "does not match its schema"),
    ([("ce_specversion", b"0.3")], b"{}", "CloudEvents 1.0"),
    ([("ce_specversion", b"1.0"), ("ce_type", b"org.other.Thing.v1")], b"{}", "unknown event type"),
    ([("ce_specversion", b"1.0"), ("ce_type", b"cz.partner-ca.RevocationRequested.v2")], b"{}",
     "schema version"),
    ([("ce_specversion", b"\xff")], b"{}", "UTF-8"),
    (None, None, "CloudEvents 1.0"),
    (GOOD, None, "missing"),
    (GOOD, b"x" * 300_000, "too large"),
    ([*GOOD[:3], ("ce_time", b"yesterday")], b'{"serial": "0A", "reason": "x", "requested_by": "y"}',
     "does not match its schema"),
])
def test_malformed_records_name_what_is_wrong(headers: object, value: bytes | None,
                                              reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        decode(headers, value)
