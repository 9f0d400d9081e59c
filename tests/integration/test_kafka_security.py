"""Nothing on Kafka is believed unless it proves where it came from (issue 15), on the real,
secured broker: the attacks an attacker with a broker credential tried, each causing nothing
but a MessageRejected with its reason; the ACLs per principal; record signatures checked by
an independent verifier (openssl) written from docs/kafka.md."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import PartnerCa
from adapters.transport.kafka.envelope import encode
from adapters.transport.kafka.security import (
    RecordSigner,
    UnauthenticatedRecord,
    role_credentials,
)
from ca_core import messages as m
from ca_core.certificate import Certificate, CertificateStatus
from ca_core.eventmodel import all_events
from ca_core.processing import RejectedMessage
from ca_core.x509profile import to_pem
from tests.support import KAFKA_CREDENTIALS, USER, enroll, make_system, register


@pytest.fixture
def system(tmp_path: Path, kafka_bootstrap: str) -> Iterator[PartnerCa]:
    built = make_system(tmp_path / "data", kafka_bootstrap=kafka_bootstrap,
                        kafka_prefix=f"s{uuid.uuid4().hex[:12]}.")
    register(built)
    register(built, "P24-000999")  # the attacker has an account of their own
    yield built
    built.close()


def _options(role: str) -> dict[str, Any]:
    return role_credentials(KAFKA_CREDENTIALS, role).client_options


def publish(system: PartnerCa, logical: str, message: m.Message,
            sign_as: str | RecordSigner | None = None,
            tamper: Callable[[bytes, bytes, list[tuple[str, bytes]]],
                             tuple[bytes, bytes, list[tuple[str, bytes]]]] | None = None) -> None:
    """Write a record as a broker super user (a leaked admin credential, a broker under the
    attacker's control): unsigned, or signed as ``sign_as``, then perhaps tampered with."""
    topic = system.settings.kafka_topic_prefix + logical
    key, value, headers = encode(message, "/partner-ca/portal")
    if sign_as is not None:
        signer = sign_as if isinstance(sign_as, RecordSigner) else role_credentials(
            KAFKA_CREDENTIALS, sign_as, signs=True).signer()
        headers = signer.sign(topic, key, headers, value)
    if tamper is not None:
        key, value, headers = tamper(key, value, headers)
    producer = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all",
                             **_options("admin"))
    try:
        producer.send(topic, key=key, value=value, headers=headers).get(timeout=30)
    finally:
        producer.close()


def rejections(app: Any) -> list[str]:
    return [e.reason for _, e in all_events(app) if isinstance(e, RejectedMessage.MessageRejected)]


def until_rejected(system: PartnerCa, app: Any, count: int, pump: Callable[[], Any]) -> list[str]:
    deadline = time.monotonic() + 60
    while len(found := rejections(app)) < count:
        assert time.monotonic() < deadline, f"only {found} rejected"
        pump()
    return found


def certificates(system: PartnerCa) -> list[Any]:
    return [e for _, e in all_events(system.ca) if isinstance(e, Certificate.CertificateIssued)]


def _attacker_csr(user: str = "EVIL-1") -> str:
    return softtoken.make_csr(softtoken.new_key(), user)


def _requested(user: str = "EVIL-1", module: str = "EPAK") -> m.CertificateRequested:
    return m.CertificateRequested(message_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC),
                                  request_id=uuid.uuid4(), user_id=user, module=module,
                                  csr_pem=_attacker_csr(user), renews_serial=None)


# -- the attacks of the issue, each now causing nothing ---------------------------------
def test_a_forged_certificate_request_issues_nothing(system: PartnerCa) -> None:
    """Unsigned, signed with a key of our own making, or with the CA's (not the portal's)
    key: the CA records each as rejected and signs nothing."""
    stranger = RecordSigner(ed25519.Ed25519PrivateKey.generate())
    publish(system, m.REQUESTS, _requested())
    publish(system, m.REQUESTS, _requested(), sign_as=stranger)
    publish(system, m.REQUESTS, _requested(), sign_as="ca")
    reasons = until_rejected(system, system.ca, 3, system.pump)
    assert certificates(system) == []
    assert any("not signed" in r for r in reasons)
    assert sum("unknown key" in r for r in reasons) == 2  # the CA trusts the portal's key only


def test_a_forged_revocation_revokes_nothing(system: PartnerCa) -> None:
    victim = enroll(system)
    serial = victim.picked.serial
    forged = m.RevocationRequested(message_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC),
                                   serial=serial, reason="keyCompromise",
                                   requested_by="operator:anna")
    publish(system, m.REQUESTS, forged)
    reasons = until_rejected(system, system.ca, 1, system.pump)
    assert "not signed" in reasons[0]
    assert system.ca.status_of(serial) == CertificateStatus.GOOD
    assert system.portal.request(victim.request_id).certificate_status == "good"


def _pending_request(system: PartnerCa, user: str = USER) -> tuple[softtoken.UserKey, uuid.UUID]:
    """A request recorded by the portal and not yet relayed to the CA."""
    _, otp = system.portal.issue_otp(user, "EPAK", issued_by="admin-epak")
    session = system.portal.login_with_otp(user, otp)
    key = softtoken.new_key()
    return key, system.portal.submit_request(session, softtoken.make_csr(key, user),
                                             "revocation secret 1", "revocation secret 1")


def _portal_inbox(system: PartnerCa) -> Callable[[], Any]:
    inbox = system.transport.inboxes[1]  # type: ignore[attr-defined]
    assert inbox.logical == m.CA_EVENTS
    return lambda: inbox.poll_once(timeout_ms=200)


def _self_signed_for(key: ec.EllipticCurvePrivateKey, user: str) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return to_pem(cert)


def _issued(request_id: uuid.UUID, pem: str, serial: str,
            not_before: datetime, not_after: datetime) -> m.CertificateIssued:
    return m.CertificateIssued(message_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC),
                               request_id=request_id, serial=serial, user_id=USER,
                               module="EPAK", not_before=not_before, not_after=not_after,
                               certificate_pem=pem)


def test_a_forged_certificate_for_a_pending_request_is_not_handed_out(
        system: PartnerCa) -> None:
    """The victim's request is pending; the attacker sends a certificate for their own key
    — unsigned, then signed with the CA's very key (a compromised CA relay): the first fails
    its signature, the second the portal's own checks. The victim then gets their own."""
    attacker = enroll(system, "P24-000999")  # a genuine certificate of ours, another key
    key, request_id = _pending_request(system)
    attacker_key = ec.generate_private_key(ec.SECP256R1())
    foreign = _self_signed_for(attacker_key, USER)
    now = datetime.now(UTC)
    publish(system, m.CA_EVENTS, _issued(request_id, foreign, "AB" * 16, now, now))
    publish(system, m.CA_EVENTS, _issued(request_id, foreign, "AB" * 16, now, now),
            sign_as="ca")
    cert = x509.load_pem_x509_certificate(attacker.picked.certificate_pem.encode())
    publish(system, m.CA_EVENTS, _issued(request_id, attacker.picked.certificate_pem,
                                         attacker.picked.serial, cert.not_valid_before_utc,
                                         cert.not_valid_after_utc), sign_as="ca")
    reasons = until_rejected(system, system.portal, 3, _portal_inbox(system))
    assert system.portal.request(request_id).state == "submitted"
    assert any("not signed" in r for r in reasons)
    assert any("not signed by our issuing CA" in r for r in reasons)
    assert any("another key than the request's CSR" in r for r in reasons)
    system.pump()
    picked = system.portal.pickup(request_id, USER)
    mine = x509.load_pem_x509_certificate(picked.certificate_pem.encode()).public_key()
    assert key.public_key().public_numbers() == mine.public_numbers()  # type: ignore[union-attr]


def test_a_forged_revocation_confirmation_does_not_block_a_good_certificate(
        system: PartnerCa) -> None:
    victim = enroll(system)
    other = enroll(system, "P24-000999")
    forged = m.CertificateRevoked(message_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC),
                                  serial=victim.picked.serial, reason="keyCompromise",
                                  revoked_at=datetime.now(UTC), revoked_by="user:P24-000123",
                                  request_id=victim.request_id)
    publish(system, m.CA_EVENTS, forged)  # unsigned
    publish(system, m.CA_EVENTS, forged.model_copy(update={"message_id": str(uuid.uuid4())}),
            sign_as="ca")  # authenticated, but nobody asked for it
    publish(system, m.CA_EVENTS, forged.model_copy(update={
        "message_id": str(uuid.uuid4()), "revoked_by": "operator:anna",
        "request_id": other.request_id}), sign_as="ca")  # a serial that is not that request's
    reasons = until_rejected(system, system.portal, 3, system.pump)
    assert any("not signed" in r for r in reasons)
    assert any("did not ask for" in r for r in reasons)
    assert any("has no such certificate" in r for r in reasons)
    for enrolled in (victim, other):
        assert system.portal.request(enrolled.request_id).certificate_status == "good"


def test_an_altered_or_moved_record_is_rejected(system: PartnerCa) -> None:
    """A genuine portal signature on a changed value, an added header, another key, or moved
    to another topic: each fails its signature."""
    def changed_value(k: bytes, v: bytes, h: list[tuple[str, bytes]]) -> Any:
        return k, v.replace(b"EVIL-1", b"EVIL-2"), h

    def added_header(k: bytes, v: bytes, h: list[tuple[str, bytes]]) -> Any:
        return k, v, [*h, ("ce_extra", b"1")]

    def other_key(k: bytes, v: bytes, h: list[tuple[str, bytes]]) -> Any:
        return str(uuid.uuid4()).encode(), v, h

    for tamper in (changed_value, added_header, other_key):
        publish(system, m.REQUESTS, _requested(), sign_as="portal", tamper=tamper)
    # signed for portal-events, delivered on requests
    message = _requested()
    key, value, headers = encode(message, "/partner-ca/portal")
    signer = role_credentials(KAFKA_CREDENTIALS, "portal", signs=True).signer()
    moved = signer.sign(system.settings.kafka_topic_prefix + m.PORTAL_EVENTS, key, headers, value)
    publish(system, m.REQUESTS, message, tamper=lambda k, v, h: (k, v, moved))
    reasons = until_rejected(system, system.ca, 4, system.pump)
    assert all("does not match the record" in r for r in reasons), reasons
    assert certificates(system) == []


def test_a_record_of_a_signed_page_altered_or_given_another_proof_is_rejected(
        system: PartnerCa) -> None:
    """A genuine portal page of three records: one changed, one carrying another record's
    proof, one with another page's signature, one claiming another index, one stripped of
    its proof — each fails; the page's untouched records are not published."""
    topic = system.settings.kafka_topic_prefix + m.REQUESTS
    signer = role_credentials(KAFKA_CREDENTIALS, "portal", signs=True).signer()
    page = [(topic, *encode(message, "/partner-ca/portal")) for message in
            (_requested(), _requested(), _requested())]
    records = [(t, k, h, v) for t, k, v, h in page]
    signed = signer.sign_page(records)
    other = signer.sign_page(records[:2])  # another page: two records, another root

    def replace(headers: list[tuple[str, bytes]], name: str,
                value: bytes | None) -> list[tuple[str, bytes]]:
        kept = [(n, v) for n, v in headers if n != name]
        return kept if value is None else [*kept, (name, value)]

    proof_of = [dict(h)["ce_proof"] for h in signed]
    index_moved = proof_of[0].replace(b"0 3 ", b"1 3 ", 1)
    forged = [
        (records[0][1], records[0][3].replace(b"EVIL-1", b"EVIL-2"), signed[0]),
        (records[1][1], records[1][3], replace(signed[1], "ce_proof", proof_of[2])),
        (records[2][1], records[2][3], replace(signed[2], "ce_signature",
                                               dict(other[0])["ce_signature"])),
        (records[0][1], records[0][3], replace(signed[0], "ce_proof", index_moved)),
        (records[1][1], records[1][3], replace(signed[1], "ce_proof", None)),
        (records[2][1], records[2][3], replace(signed[2], "ce_proof", b"0 3 zz")),
    ]
    producer = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all",
                             **_options("admin"))
    try:
        for key, value, headers in forged:
            producer.send(topic, key=key, value=value, headers=headers).get(timeout=30)
    finally:
        producer.close()
    reasons = until_rejected(system, system.ca, len(forged), system.pump)
    assert sum("does not match the record" in r for r in reasons) >= 4, reasons
    assert any("ce_proof is malformed" in r for r in reasons), reasons
    assert certificates(system) == []


def test_a_page_signature_is_checked_once_for_all_its_records() -> None:
    """The verifier remembers page signatures it checked: 64 records, one Ed25519 check;
    a record with a page's signature and a path to another root still fails."""
    portal = role_credentials(KAFKA_CREDENTIALS, "portal", signs=True).signer()
    reader = role_credentials(KAFKA_CREDENTIALS, "reader").verifier()
    records = [("p.portal-events", *encode(_requested(), "/partner-ca/portal"))
               for _ in range(64)]
    records = [(t, k, h, v) for t, k, v, h in records]
    checks: list[bytes] = []
    for peer in reader.peers.values():
        original = peer.public_key

        class Counting:
            def __init__(self, key: Any) -> None:
                self.key = key

            def verify(self, signature: bytes, data: bytes) -> None:
                checks.append(data)
                self.key.verify(signature, data)

        object.__setattr__(peer, "public_key", Counting(original))
    for (topic, key, _, value), headers in zip(records, portal.sign_page(records), strict=True):
        reader.verify(m.PORTAL_EVENTS, topic, key, headers, value)
    assert len(checks) == 1 and checks[0].startswith(b"partner-ca page v1\n64\n")
    topic, key, headers, value = records[0]
    signed = portal.sign_page(records)[0]
    with pytest.raises(UnauthenticatedRecord, match="does not match the record"):
        reader.verify(m.PORTAL_EVENTS, topic, key, signed, value + b" ")


def test_a_reader_takes_each_topic_only_from_its_publisher() -> None:
    """The reader trusts both signing keys, each for its own topics only."""
    reader = role_credentials(KAFKA_CREDENTIALS, "reader").verifier()
    ca = role_credentials(KAFKA_CREDENTIALS, "ca", signs=True).signer()
    key, value, headers = encode(_requested(), "/partner-ca/portal")
    signed = ca.sign("p.portal-events", key, headers, value)
    with pytest.raises(UnauthenticatedRecord, match="published by partner-ca-portal only"):
        reader.verify(m.PORTAL_EVENTS, "p.portal-events", key, signed, value)
    reader.verify(m.CA_EVENTS, "p.ca-events", key, ca.sign("p.ca-events", key, headers, value),
                  value)


# -- compressed batches --------------------------------------------------------------
def _zstd(data: bytes) -> bytes:
    """A valid Zstandard frame (RFC 8878 §3.1) made of raw and RLE blocks only: the
    attacker's compressor, so that writing a zstd batch needs no zstd library (and the
    consumers here have none)."""
    most = 128 * 1024
    blocks: list[tuple[int, bytes, int]] = []  # (type, content, regenerated size)
    raw = bytearray()
    i = 0
    while i < len(data):
        run = 1
        while i + run < len(data) and data[i + run] == data[i] and run < most:
            run += 1
        if run >= 16:
            if raw:
                blocks.append((0, bytes(raw), len(raw)))
                raw.clear()
            blocks.append((1, data[i:i + 1], run))
        else:
            raw += data[i:i + run]
            if len(raw) >= most:
                blocks.append((0, bytes(raw), len(raw)))
                raw.clear()
        i += run
    if raw or not blocks:
        blocks.append((0, bytes(raw), len(raw)))
    frame = bytearray(b"\x28\xb5\x2f\xfd\x00\x38")  # magic; no checksum; window 128 KiB
    for n, (kind, content, size) in enumerate(blocks):
        last = n == len(blocks) - 1
        frame += ((size << 3) | (kind << 1) | last).to_bytes(3, "little") + content
    return bytes(frame)


def _publish_zstd(bootstrap: str, topic: str, key: bytes, value: bytes,
                  headers: list[tuple[str, bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """One record in a zstd-compressed batch, written with a leaked broker credential."""
    import kafka.codec
    import kafka.record.default_records

    with monkeypatch.context() as patched:  # kafka-python writes zstd with the frame above
        patched.setattr(kafka.codec, "has_zstd", lambda: True)
        patched.setattr(kafka.record.default_records, "zstd_encode", _zstd)
        patched.setitem(KafkaProducer._COMPRESSORS, "zstd",  # type: ignore[attr-defined]
                        (lambda: True, KafkaProducer._COMPRESSORS["zstd"][1]))  # type: ignore[attr-defined]
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                 compression_type="zstd", **_options("admin"))
        try:
            producer.send(topic, key=key, value=value,
                          headers=[*headers, ("pad", b"\0" * 4096)]).get(timeout=30)
        finally:
            producer.close()


def test_a_compressed_batch_reaches_the_ca_as_plain_records_and_stops_nothing(
        system: PartnerCa, monkeypatch: pytest.MonkeyPatch) -> None:
    """A leaked credential writes a zstd batch to requests (kafka-python here has no zstd
    library): the topic keeps it uncompressed, so the CA reads it, rejects the unsigned
    record and goes on to issue the next real request."""
    from adapters.transport.kafka.topics import topic_settings

    system.pump()  # the topics exist
    topic = system.settings.kafka_topic_prefix + m.REQUESTS
    assert topic_settings(system.settings.kafka_bootstrap, topic,
                          _options("admin"))["compression.type"] == "uncompressed"
    key, value, headers = encode(_requested(), "/partner-ca/portal")
    _publish_zstd(system.settings.kafka_bootstrap, topic, key, value, headers, monkeypatch)
    assert any("not signed" in r for r in until_rejected(system, system.ca, 1, system.pump))
    enrolled = enroll(system)
    assert enrolled.picked.serial in [c.serial for c in certificates(system)]


def test_without_the_topic_setting_a_compressed_batch_stops_a_consumer_and_grant_sets_it(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the setting: on a topic that keeps producers' compression, kafka-python without
    the codec raises at that batch on every poll. `kafka grant`'s topic step sets it on
    existing topics, keeping their other settings; from then on such a batch is readable."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import UnsupportedCodecError

    from adapters.transport.kafka.topics import harden_topics, topic_settings

    prefix = f"z{uuid.uuid4().hex[:10]}."
    topic = prefix + m.REQUESTS
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, **_options("admin"))
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={
            "compression.type": "producer", "retention.ms": "86400000"})])
    finally:
        admin.close()
    partition = TopicPartition(topic, 0)

    def read_from(offset: int) -> list[Any]:
        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, **_options("admin"))
        try:
            consumer.assign([partition])
            consumer.seek(partition, offset)
            deadline = time.monotonic() + 30
            while not (polled := consumer.poll(timeout_ms=500)):
                assert time.monotonic() < deadline, "nothing to read"
            return polled[partition]
        finally:
            consumer.close()

    _publish_zstd(kafka_bootstrap, topic, b"k", b"v" * 100, [], monkeypatch)
    with pytest.raises(UnsupportedCodecError):
        read_from(0)
    assert harden_topics(kafka_bootstrap, prefix, _options("admin")) == [
        f"{topic} compression.type=uncompressed"]
    assert topic_settings(kafka_bootstrap, topic, _options("admin")) == {
        "compression.type": "uncompressed", "retention.ms": "86400000"}
    _publish_zstd(kafka_bootstrap, topic, b"k", b"w" * 100, [], monkeypatch)
    assert [r.value for r in read_from(1)] == [b"w" * 100]


class _NotUtf8(str):
    """A header key kafka-python's producer writes as bytes that are not UTF-8 (any other
    client may; the broker does not check)."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe"


def _publish_batch(bootstrap: str, topic: str,
                   records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]],
                   monkeypatch: pytest.MonkeyPatch | None = None, partition: int = 0) -> None:
    """Records in one batch on ``partition`` (zstd-compressed when ``monkeypatch`` is
    given), written with a leaked broker credential."""
    import kafka.codec
    import kafka.record.default_records

    with pytest.MonkeyPatch.context() as patched:
        if monkeypatch is not None:
            patched.setattr(kafka.codec, "has_zstd", lambda: True)
            patched.setattr(kafka.record.default_records, "zstd_encode", _zstd)
            patched.setitem(KafkaProducer._COMPRESSORS, "zstd",  # type: ignore[attr-defined]
                            (lambda: True,
                             KafkaProducer._COMPRESSORS["zstd"][1]))  # type: ignore[attr-defined]
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=500,
                                 compression_type="zstd" if monkeypatch else None,
                                 **_options("admin"))
        try:
            sent = [producer.send(topic, key=key, value=value, partition=partition,
                                  headers=[*headers, ("pad", b"\0" * 4096)])
                    for key, value, headers in records]
            producer.flush(timeout=30)
            offsets = [future.get(timeout=30).offset for future in sent]
        finally:
            producer.close()
    assert offsets == list(range(offsets[0], offsets[0] + len(records)))


def test_a_record_kafka_python_cannot_parse_is_rejected_and_the_ca_goes_on(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    """A header key that is not UTF-8 makes kafka-python raise at that record on every fetch
    (and then spin in poll() for ever). The CA records the readable record before it as
    usual, the unreadable one and the rest of its batch as one MessageRejected with the
    offsets, and issues the next real request."""
    system = _system_with_requests_topic(tmp_path, kafka_bootstrap, {})
    try:
        topic = system.settings.kafka_topic_prefix + m.REQUESTS
        records = [encode(_requested(), "/partner-ca/portal") for _ in range(3)]
        bad = (records[1][0], records[1][1], [*records[1][2], (_NotUtf8("x"), b"1")])
        _publish_batch(system.settings.kafka_bootstrap, topic, [records[0], bad, records[2]])
        reasons = until_rejected(system, system.ca, 2, system.pump)
        assert "not signed" in reasons[0]
        assert reasons[1].startswith("unreadable records at offsets 1–2: kafka-python cannot "
                                     "parse them"), reasons
        enrolled = enroll(system)
        assert [c.serial for c in certificates(system)] == [enrolled.picked.serial]
    finally:
        system.close()


def test_a_batch_in_a_codec_without_library_is_rejected_whole(
        tmp_path: Path, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a requests topic someone made to keep producers' compression, a zstd batch of
    three records (no zstd library here): one MessageRejected for offsets 0–2, then the next
    real request is issued."""
    system = _system_with_requests_topic(tmp_path, kafka_bootstrap,
                                         {"compression.type": "producer"})
    try:
        topic = system.settings.kafka_topic_prefix + m.REQUESTS
        _publish_batch(system.settings.kafka_bootstrap, topic,
                       [encode(_requested(), "/partner-ca/portal") for _ in range(3)],
                       monkeypatch)
        reasons = until_rejected(system, system.ca, 1, system.pump)
        assert reasons == [reasons[0]] and reasons[0].startswith(
            "unreadable records at offsets 0–2: kafka-python cannot parse them"), reasons
        assert "zstd" in reasons[0]
        enrolled = enroll(system)
        assert [c.serial for c in certificates(system)] == [enrolled.picked.serial]
    finally:
        system.close()


def test_audit_fetch_heads_reads_past_records_kafka_python_cannot_parse(
        system: PartnerCa) -> None:
    """An unparseable record on ca-events between two signed tree heads: the auditor's
    fetch still returns both heads (it used to stop with an error there)."""
    from adapters.audit.tree_heads import checkpoint
    from adapters.transport.kafka.heads import fetch_heads

    key = ec.generate_private_key(ec.SECP256R1())
    enroll(system)
    checkpoint(system.ca, key)
    system.pump()
    topic = system.settings.kafka_topic_prefix + m.CA_EVENTS
    record = encode(_requested(), "/partner-ca/ca")
    for partition in range(system.settings.kafka_partitions):
        _publish_batch(system.settings.kafka_bootstrap, topic,
                       [(record[0], record[1], [*record[2], (_NotUtf8("x"), b"1")])],
                       partition=partition)
    enroll(system, "P24-000999")
    checkpoint(system.ca, key)
    system.pump()
    heads = fetch_heads(system.settings.kafka_bootstrap, system.settings.kafka_topic_prefix,
                        role_credentials(KAFKA_CREDENTIALS, "reader"))
    assert [h["application"] for h in heads] == ["ca", "ca"]
    # and the portal's inbox, reading the same records, rejected each and went on
    assert sum(r.startswith("unreadable records at offsets") for r in rejections(system.portal)
               ) == system.settings.kafka_partitions


def _system_with_requests_topic(tmp_path: Path, kafka_bootstrap: str,
                                configs: dict[str, str]) -> PartnerCa:
    """A system whose requests topic (one partition) exists before it starts, with
    ``configs``."""
    from kafka.admin import KafkaAdminClient, NewTopic

    prefix = f"u{uuid.uuid4().hex[:11]}."
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, **_options("admin"))
    try:
        admin.create_topics([NewTopic(prefix + m.REQUESTS, 1, 1, topic_configs=configs)])
    finally:
        admin.close()
    built = make_system(tmp_path / "data", kafka_bootstrap=kafka_bootstrap, kafka_prefix=prefix)
    register(built)
    return built


# -- the broker's own checks ---------------------------------------------------------
def test_a_client_without_credentials_cannot_connect(kafka_bootstrap: str) -> None:
    """Plaintext to the TLS listener, and TLS without a client certificate: neither gets a
    metadata answer within 8 s (a client with credentials bootstraps in well under a second
    here; both tried at once)."""
    def connect(options: dict[str, Any]) -> str:
        try:
            KafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=3000,
                          bootstrap_timeout_ms=8000, **options)
        except KafkaError as exc:
            return type(exc).__name__
        return "connected"

    no_certificate = {"security_protocol": "SSL",
                      "ssl_cafile": str(KAFKA_CREDENTIALS / "admin" / "service-ca.pem")}
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(connect, [{}, no_certificate]))
    assert "connected" not in outcomes, outcomes


@pytest.mark.parametrize(("role", "logical"), [("reader", m.REQUESTS), ("portal", m.CA_EVENTS),
                                               ("ca", m.REQUESTS)])
def test_a_principal_cannot_write_what_it_does_not_publish(
        system: PartnerCa, role: str, logical: str) -> None:
    system.pump()  # the topics exist
    producer = KafkaProducer(bootstrap_servers=system.settings.kafka_bootstrap, acks="all",
                             max_block_ms=10_000, **_options(role))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(system.settings.kafka_topic_prefix + logical, b"x").get(timeout=30)
    finally:
        producer.close()


def test_the_reader_reads_ca_events_but_not_requests(system: PartnerCa) -> None:
    enroll(system)
    names = {t: system.settings.kafka_topic_prefix + t for t in (m.CA_EVENTS, m.REQUESTS)}
    consumer = KafkaConsumer(bootstrap_servers=system.settings.kafka_bootstrap,
                             **_options("reader"))
    try:
        assert consumer.partitions_for_topic(names[m.CA_EVENTS])
        assert not consumer.partitions_for_topic(names[m.REQUESTS])  # not even described
    finally:
        consumer.close()


# -- docs/kafka.md's scheme, checked by openssl ---------------------------------------
def _signing_input_from_the_docs(topic: str, key: bytes, headers: list[tuple[str, bytes]],
                                 value: bytes) -> bytes:
    """Written from docs/kafka.md ("Record signatures"), not from our code."""
    lines = [b"partner-ca record v1", topic.encode(), key]
    lines += [name.encode() + b"=" + raw for name, raw in sorted(headers)
              if name not in ("ce_signature", "ce_proof")]
    return b"\n".join(lines) + b"\n" + hashlib.sha256(value).hexdigest().encode()


def _page_from_the_docs(proof: bytes, signing_input: bytes) -> bytes:
    """The signed page statement a record's ce_proof leads to (docs/kafka.md, RFC 9162)."""
    def sha(*parts: bytes) -> bytes:
        return hashlib.sha256(b"".join(parts)).digest()

    index, size, *path = proof.decode().split(" ")
    fn, sn, r = int(index), int(size) - 1, sha(b"\x00", signing_input)
    for p in (bytes.fromhex(h) for h in path):
        assert sn > 0
        if fn % 2 == 1 or fn == sn:
            r = sha(b"\x01", p, r)
            while fn % 2 == 0 and fn > 0:
                fn, sn = fn // 2, sn // 2
        else:
            r = sha(b"\x01", r, p)
        fn, sn = fn // 2, sn // 2
    assert sn == 0
    return b"partner-ca page v1\n" + size.encode() + b"\n" + r.hex().encode()


def test_openssl_verifies_a_ca_event_with_the_published_certificate(
        system: PartnerCa, tmp_path: Path) -> None:
    enroll(system)
    topic = system.settings.kafka_topic_prefix + m.CA_EVENTS
    consumer = KafkaConsumer(bootstrap_servers=system.settings.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000,
                             **_options("reader"))
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    record = next(iter(consumer))
    consumer.close()
    headers = [(n, v) for n, v in record.headers]
    found = dict(headers)
    # the CA's published signing certificate; its key id is the SHA-256 of its SPKI
    certificate = KAFKA_CREDENTIALS / "ca" / "signing.crt"
    public = subprocess.run(["openssl", "x509", "-in", str(certificate), "-pubkey", "-noout"],
                            check=True, capture_output=True).stdout
    (tmp_path / "pub.pem").write_bytes(public)
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(tmp_path / "pub.pem"),
                           "-outform", "DER"], check=True, capture_output=True).stdout
    assert found["ce_signer"].decode() == hashlib.sha256(spki).hexdigest()
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(found["ce_signature"]))

    assert "ce_proof" in found  # the relay signs pages

    def openssl_verify(value: bytes) -> subprocess.CompletedProcess[str]:
        (tmp_path / "input.bin").write_bytes(_page_from_the_docs(found["ce_proof"], (
            _signing_input_from_the_docs(record.topic, record.key, headers, value))))
        return subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                               str(tmp_path / "pub.pem"), "-rawin", "-in",
                               str(tmp_path / "input.bin"), "-sigfile",
                               str(tmp_path / "sig.bin")], capture_output=True, text=True)

    assert "Signature Verified Successfully" in openssl_verify(record.value).stdout
    assert openssl_verify(record.value + b" ").returncode != 0
