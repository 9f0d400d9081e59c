"""Who may speak on Kafka, twice over: mutual TLS to the broker (whose ACLs say which
principal may read or write which topic), and a signature on every record by the role that
published it, checked by every consumer before the record can cause anything. A leaked
broker credential, a wrong ACL or a compromised broker can then not mint or revoke anything.

Record signatures (docs/kafka.md, "Record signatures", for verifiers in other languages).
Each record has a *signing input*::

    partner-ca record v1 \\n
    <topic> \\n
    <key> \\n
    <name>=<value> \\n        one line per header but ce_signature and ce_proof, by name
    <SHA-256 of the value, lower-case hex>

The relays sign a *page* of up to ``PAGE_RECORDS`` records at once: the leaves are
SHA-256(0x00 || signing input) in publication order, the page root their RFC 6962 Merkle
tree hash, and Ed25519 signs ``partner-ca page v1\\n<size>\\n<root, hex>``. Each record
carries ``ce_signer`` (SHA-256 of the signing certificate's SubjectPublicKeyInfo, hex; part
of its signing input), ``ce_signature`` (base64, the page's) and ``ce_proof`` (``<index>
<size> <audit path, hex, space-separated>``). A record without ``ce_proof`` is signed alone:
``ce_signature`` is then over its signing input itself (how records were signed before
pages; still accepted). A consumer accepts a record only when the signer is a certificate in
its ``peers.pem``, issued by the service CA, valid now, whose CN is the principal that
publishes that topic; it verifies each page signature once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from adapters.transport.kafka.service_pki import PRINCIPALS
from ca_core import merkle
from ca_core.errors import NotReady
from ca_core.messages import CA_EVENTS, PORTAL_EVENTS, REQUESTS

SIGNATURE, SIGNER, PROOF = "ce_signature", "ce_signer", "ce_proof"
PREFIX = b"partner-ca record v1\n"
PAGE_PREFIX = b"partner-ca page v1\n"
#: records under one page signature (an audit path of at most 6 hashes)
PAGE_RECORDS = 64
#: page signatures a verifier remembers having checked
VERIFIED_PAGES = 4096
UNSIGNED = (SIGNATURE, PROOF)
#: who publishes each logical topic (the CN its records' signing certificate must carry)
PUBLISHER = {REQUESTS: "portal", PORTAL_EVENTS: "portal", CA_EVENTS: "ca"}


class KafkaCredentialsError(NotReady):
    code = "kafka-credentials"


class UnauthenticatedRecord(ValueError):
    """A record whose signature does not prove it comes from the topic's publisher."""


def key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def signing_input(topic: str, key: bytes | None, headers: Sequence[tuple[str, bytes]],
                  value: bytes | None) -> bytes:
    """What is signed (see the module text). Raises UnauthenticatedRecord for headers that
    cannot be signed unambiguously (repeated names, not UTF-8, a newline in a value)."""
    if key is not None and b"\n" in key:
        raise UnauthenticatedRecord("record key contains a newline")
    lines = [PREFIX, topic.encode(), b"\n", key or b"", b"\n"]
    seen: set[str] = set()
    for name, raw in sorted((n, v or b"") for n, v in headers if n not in UNSIGNED):
        if name in seen or b"\n" in raw or "\n" in name or "=" in name:
            raise UnauthenticatedRecord(f"header {name!r} is repeated or malformed")
        seen.add(name)
        lines += [name.encode(), b"=", raw, b"\n"]
    lines.append(hashlib.sha256(value or b"").hexdigest().encode())
    return b"".join(lines)


class RecordSigner:
    """The publishing role's signing key (``signing.key``) and its key id."""

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key
        self.kid = key_id(key.public_key()).encode()

    def sign(self, topic: str, key: bytes, headers: list[tuple[str, bytes]],
             value: bytes) -> list[tuple[str, bytes]]:
        """``headers`` with ``ce_signer`` and ``ce_signature`` added."""
        signed = [*headers, (SIGNER, self.kid)]
        signature = self._key.sign(signing_input(topic, key, signed, value))
        return [*signed, (SIGNATURE, base64.b64encode(signature))]

    def sign_page(self, records: Sequence[tuple[str, bytes, list[tuple[str, bytes]], bytes]]
                  ) -> list[list[tuple[str, bytes]]]:
        """Each record's (topic, key, headers, value) headers with ``ce_signer``,
        ``ce_signature`` and ``ce_proof`` added: one signature per ``PAGE_RECORDS``."""
        out: list[list[tuple[str, bytes]]] = []
        for first in range(0, len(records), PAGE_RECORDS):
            chunk = records[first:first + PAGE_RECORDS]
            signed = [[*headers, (SIGNER, self.kid)] for _, _, headers, _ in chunk]
            leaves = [merkle.leaf_hash(signing_input(topic, key, heads, value))
                      for (topic, key, _, value), heads in zip(chunk, signed, strict=True)]
            root, paths = merkle.all_inclusion_proofs(leaves)
            signature = base64.b64encode(self._key.sign(page_statement(len(leaves), root)))
            for index, (heads, path) in enumerate(zip(signed, paths, strict=True)):
                proof = " ".join([str(index), str(len(leaves)), *(h.hex() for h in path)])
                out.append([*heads, (PROOF, proof.encode()), (SIGNATURE, signature)])
        return out


def page_statement(size: int, root: bytes) -> bytes:
    """What a page signature signs."""
    return b"%s%d\n%s" % (PAGE_PREFIX, size, root.hex().encode())


def _page_root(proof: bytes, leaf: bytes) -> tuple[int, bytes]:
    """The page size and root a record's ``ce_proof`` leads to from its leaf."""
    try:
        index_text, size_text, *path_hex = proof.decode("ascii").split(" ")
        index, size = int(index_text), int(size_text)
        path = [bytes.fromhex(h) for h in path_hex]
    except (UnicodeDecodeError, ValueError):
        raise UnauthenticatedRecord("ce_proof is malformed") from None
    if not 0 < size <= PAGE_RECORDS or any(len(h) != 32 for h in path):
        raise UnauthenticatedRecord("ce_proof is malformed")
    root = merkle.root_from_inclusion(index, size, leaf, path)
    if root is None:
        raise UnauthenticatedRecord("ce_proof is not an audit path of its page")
    return size, root


@dataclass(frozen=True)
class Peer:
    principal: str
    public_key: ed25519.Ed25519PublicKey
    not_before: datetime
    not_after: datetime


class RecordVerifier:
    """The signing certificates a consuming role accepts (its ``peers.pem``), each checked
    once against the service CA when loaded."""

    def __init__(self, peers: list[x509.Certificate], service_ca: x509.Certificate) -> None:
        self.peers: dict[str, Peer] = {}
        #: page signatures checked already: (key id, signed statement, signature)
        self._verified: set[tuple[str, bytes, bytes]] = set()
        for cert in peers:
            who = cert.subject.rfc4514_string()
            try:
                cert.verify_directly_issued_by(service_ca)  # a stranger's certificate: refuse
            except (ValueError, TypeError, InvalidSignature):
                raise KafkaCredentialsError(f"peer certificate {who} is not issued by the "
                                            "service CA") from None
            public = cert.public_key()
            if not isinstance(public, ed25519.Ed25519PublicKey):
                raise KafkaCredentialsError(f"peer certificate {who} is not an Ed25519 "
                                            "signing certificate")
            cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            self.peers[key_id(public)] = Peer(str(cn), public, cert.not_valid_before_utc,
                                              cert.not_valid_after_utc)

    def verify(self, logical_topic: str, topic: str, key: bytes | None, headers: Any,
               value: bytes | None, now: datetime | None = None) -> None:
        """Raises UnauthenticatedRecord naming what is wrong; returns when the record is
        signed by a valid signing key of the topic's publisher."""
        pairs = [(str(n), v or b"") for n, v in (headers or [])]
        found = {n: v for n, v in pairs}
        if SIGNATURE not in found or SIGNER not in found:
            raise UnauthenticatedRecord("record is not signed (no ce_signature/ce_signer)")
        try:
            kid = found[SIGNER].decode("ascii")
            signature = base64.b64decode(found[SIGNATURE], validate=True)
        except (UnicodeDecodeError, binascii.Error):
            raise UnauthenticatedRecord("ce_signer or ce_signature is malformed") from None
        peer = self.peers.get(kid)
        if peer is None:
            raise UnauthenticatedRecord(f"signed by an unknown key {kid[:16]}…")
        expected = PRINCIPALS[PUBLISHER[logical_topic]]
        if peer.principal != expected:
            raise UnauthenticatedRecord(f"signed by {peer.principal}, but {logical_topic} is "
                                        f"published by {expected} only")
        moment = now or datetime.now(UTC)
        if not peer.not_before <= moment <= peer.not_after:
            raise UnauthenticatedRecord(f"signing key {kid[:16]}… of {peer.principal} is not "
                                        f"valid now (valid {peer.not_before:%Y-%m-%d} to "
                                        f"{peer.not_after:%Y-%m-%d})")
        if sum(1 for n, _ in pairs if n == SIGNATURE) != 1 or \
                sum(1 for n, _ in pairs if n == PROOF) > 1:
            raise UnauthenticatedRecord("more than one ce_signature or ce_proof")
        signed = signing_input(topic, key, pairs, value)
        if PROOF in found:  # one of a page: its audit path leads to the signed page root
            size, root = _page_root(found[PROOF], merkle.leaf_hash(signed))
            signed = page_statement(size, root)
            seen = (kid, signed, signature)
            if seen in self._verified:
                return
        try:
            peer.public_key.verify(signature, signed)
        except InvalidSignature:
            raise UnauthenticatedRecord(f"signature by {peer.principal} does not match the "
                                        "record (altered, or moved from another)") from None
        if PROOF in found:
            if len(self._verified) >= VERIFIED_PAGES:
                self._verified.clear()
            self._verified.add(seen)


@dataclass(frozen=True)
class RoleCredentials:
    """What one role's folder of the credentials directory holds."""

    role: str
    folder: Path

    @property
    def client_options(self) -> dict[str, Any]:
        """kafka-python settings: TLS to the broker with this role's client certificate."""
        return {"security_protocol": "SSL", "ssl_check_hostname": True,
                "ssl_cafile": str(self.folder / "service-ca.pem"),
                "ssl_certfile": str(self.folder / "tls.crt"),
                "ssl_keyfile": str(self.folder / "tls.key")}

    def signer(self) -> RecordSigner:
        key = serialization.load_pem_private_key((self.folder / "signing.key").read_bytes(),
                                                 None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KafkaCredentialsError(f"{self.folder / 'signing.key'} is not an Ed25519 key")
        return RecordSigner(key)

    def verifier(self) -> RecordVerifier:
        service_ca = x509.load_pem_x509_certificate(
            (self.folder / "service-ca.pem").read_bytes())
        peers_file = self.folder / "peers.pem"
        peers = x509.load_pem_x509_certificates(peers_file.read_bytes()) \
            if peers_file.exists() and peers_file.stat().st_size else []
        return RecordVerifier(peers, service_ca)


def role_credentials(directory: Path | None, role: str, signs: bool = False) -> RoleCredentials:
    """The credentials of ``role`` (portal, ca, reader, admin) under ``directory``, or
    KafkaCredentialsError naming the file that is not there."""
    if directory is None:
        raise KafkaCredentialsError(
            "Kafka needs credentials: set PARTNER_CA_KAFKA_CREDENTIALS to the directory "
            "written by `partner-ca kafka credentials` (docs/kafka.md)")
    folder = directory / role
    needed = ["service-ca.pem", "tls.crt", "tls.key", *(["signing.key"] if signs else [])]
    for name in needed:
        if not (folder / name).is_file():
            raise KafkaCredentialsError(f"no Kafka credentials for the {role} role: "
                                          f"{folder / name} is missing")
    return RoleCredentials(role, folder)
