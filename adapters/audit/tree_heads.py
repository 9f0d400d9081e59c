"""Tamper evidence for the event stores: signed Merkle tree heads and their verification.

``checkpoint`` reads an application's whole log (pages of 10,000), computes the
RFC 6962 tree over it and records a ``TreeHeadSigned`` event, signed with the
audit key (EC P-256 in the key store, encrypted like the CA keys; its public
half in ``keys/audit.pub.pem`` for verifiers). ``verify`` recomputes every leaf
from the stored records and checks each head: signature, the leaf prefixes
since the previous head (naming the first position that differs), the root;
positions must run 1, 2, 3 … without a gap, and no head may cover positions
that are gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eventsourcing.application import AggregateNotFoundError

from adapters.periodic import run_periodically
from adapters.storage.logreader import originator_bytes, records
from ca_core import merkle
from ca_core.clock import Clock, SystemClock
from ca_core.errors import NotReady
from ca_core.eventmodel import read_log
from ca_core.ports import KeyStore
from ca_core.treehead import (
    PREFIX_BYTES,
    TreeHeads,
    head_bytes,
    head_id,
    milliseconds,
    signed_bytes,
)

AUDIT_KEY = "audit"
log = logging.getLogger("partner_ca.audit")


@dataclass(frozen=True)
class Finding:
    position: int | None
    what: str

    def __str__(self) -> str:
        return f"position {self.position}: {self.what}" if self.position else self.what


def extend_leaves(app: Any, leaves: list[bytes]) -> list[bytes]:
    """Append the leaf hashes of the records after ``len(leaves)`` (in place; returned).

    Leaf ``p`` is the hash of the record at position ``p``; a position the log does not
    hold (a sequence number taken by a transaction that rolled back) gets the absent leaf,
    so the tree commits to the gap and a row deleted later shows."""
    for record in records(app, start=len(leaves) + 1):
        while len(leaves) + 1 < record.position:
            leaves.append(merkle.absent_leaf(len(leaves) + 1))
        leaves.append(merkle.leaf_hash(merkle.leaf_data(
            record.position, originator_bytes(record), record.originator_version, record.topic,
            record.state)))
    return leaves


def leaf_hashes(app: Any) -> list[bytes]:
    """Leaf hashes of the whole log, position 1 first."""
    return extend_leaves(app, [])


def _fingerprint(public: ec.EllipticCurvePublicKey) -> str:
    return hashlib.sha256(public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def audit_key(keys: KeyStore, public_file: Path) -> ec.EllipticCurvePrivateKey:
    """The audit signing key (made on first use; its public half written for verifiers)."""
    if not keys.exists(AUDIT_KEY):
        try:
            keys.generate(AUDIT_KEY, "secp256r1")
        except FileExistsError:  # the other log's checkpoint thread made it first
            pass
    key = keys.load(AUDIT_KEY)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    if public_file.exists() and _fingerprint(key.public_key()) != _fingerprint(
            _public_from(public_file)):
        raise NotReady(
            f"the audit key this process opened is not the one whose public half is "
            f"{public_file} (heads it signed would not verify): copy the audit key file into "
            "PARTNER_CA_AUDIT_KEY_DIR, or move it there with 'partner-ca audit move-key'",
            code="audit-key-mismatch")
    if not public_file.exists():  # whole or not at all: another thread may write it too
        public_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{public_file.name}.", dir=public_file.parent)
        with os.fdopen(fd, "wb") as out:
            out.write(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        os.chmod(tmp, 0o644)
        os.replace(tmp, public_file)
    return key


def _public_from(public_file: Path) -> ec.EllipticCurvePublicKey:
    public = serialization.load_pem_public_key(public_file.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


def _heads(app: Any) -> TreeHeads | None:
    try:
        return cast(TreeHeads, app.repository.get(head_id(app.name)))
    except AggregateNotFoundError:
        return None


def checkpoint(app: Any, key: ec.EllipticCurvePrivateKey, clock: Clock | None = None,
               published: Path | None = None, leaves: list[bytes] | None = None) -> int:
    """Sign the tree over the whole log as it is now; returns the tree size.

    ``published``: a JSON-lines file outside the database that gets a copy of each head —
    whoever can rewrite the store can also drop heads from it, not from copies elsewhere
    (the relay also publishes each head on Kafka). ``leaves``: the leaf hashes a
    long-running process already holds (extended in place), else the whole log is read."""
    now = (clock or SystemClock()).now()
    heads = _heads(app) or TreeHeads(application=app.name, timestamp=now)
    leaves = extend_leaves(app, leaves if leaves is not None else [])
    size = len(leaves)
    if size == heads.tree_size:
        return size
    previous = heads.tree_size
    prefixes = b"".join(h[:PREFIX_BYTES] for h in leaves[previous:])
    top = merkle.root(leaves)
    signed_at = milliseconds(now)
    signature = key.sign(signed_bytes(app.name, size, top, previous, prefixes, signed_at),
                         ec.ECDSA(hashes.SHA256()))
    heads.signed(tree_size=size, previous_size=previous, root_hash=top.hex(),
                 leaf_prefixes=prefixes.hex(), key_fingerprint=_fingerprint(key.public_key()),
                 signature=signature.hex(), timestamp=now, signed_at_ms=signed_at)
    app.save(heads)
    if published is not None:
        published.parent.mkdir(parents=True, exist_ok=True)
        with published.open("a") as copy:
            copy.write(json.dumps({"application": app.name, "tree_size": size,
                                   "previous_size": previous, "root_hash": top.hex(),
                                   "leaf_prefixes": prefixes.hex(),
                                   "leaf_prefixes_sha256": hashlib.sha256(prefixes).hexdigest(),
                                   "key_fingerprint": _fingerprint(key.public_key()),
                                   "signature": signature.hex(),
                                   "signed_at_ms": signed_at}) + "\n")
    return size


@dataclass(frozen=True)
class Head:
    """A signed tree head; copies outside the database may carry only the prefixes' digest."""

    tree_size: int
    previous_size: int
    root_hash: str
    leaf_prefixes: str | None
    prefixes_sha256: str
    signature: str
    #: signing time (ms since the Unix epoch), part of what is signed; None in v1 heads
    signed_at_ms: int | None = None

    def signed(self, application: str) -> bytes:
        return head_bytes(application, self.tree_size, bytes.fromhex(self.root_hash),
                          self.previous_size, bytes.fromhex(self.prefixes_sha256),
                          self.signed_at_ms)

    @property
    def signed_at(self) -> datetime | None:
        if self.signed_at_ms is None:
            return None
        return datetime.fromtimestamp(self.signed_at_ms / 1000, UTC)


def _head(data: dict[str, Any]) -> Head:
    prefixes = data.get("leaf_prefixes")
    digest = data.get("leaf_prefixes_sha256") or hashlib.sha256(
        bytes.fromhex(prefixes or "")).hexdigest()
    signed_at = data.get("signed_at_ms")
    return Head(int(data["tree_size"]), int(data["previous_size"]), data["root_hash"], prefixes,
                digest, data["signature"], int(signed_at) if signed_at is not None else None)


def published_heads(files: Sequence[Path], application: str) -> dict[int, Head]:
    """Heads of ``application`` from JSON-lines copies (``heads.jsonl``, ``audit fetch-heads``)."""
    found: dict[int, Head] = {}
    for file in files:
        if not file.exists():
            continue
        for line in file.read_text().splitlines():
            data = json.loads(line)
            if data.get("application") == application:
                head = _head(data)
                found.setdefault(head.tree_size, head)
    return found


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found: no findings means every signed head holds. What no valid head
    covers (the events after ``covered``, everything when there is no head) is not a finding:
    it is said, so that "intact" is never read as more than it is."""

    events: int
    heads: int
    findings: list[Finding]
    covered: int  # tree size of the newest head that verified (0: none)
    covered_signed_at: datetime | None  # its signed time (None: no head, or a v1 head)

    @property
    def uncovered(self) -> int:
        return self.events - self.covered

    @property
    def intact(self) -> bool:
        """No finding, and a valid head covers something: "intact" is never said of a log
        that nothing signed vouches for (issue 26, item 16)."""
        return not self.findings and self.covered > 0

    def coverage(self) -> str:
        if self.covered == 0:
            # advice to sign one only where nothing was found: signing a tampered log would
            # vouch for the tampering
            return "no signed tree head covers any of it yet" + (
                " (partner-ca audit checkpoint signs one)" if not self.findings else
                "; do not sign a head over it: find out first what changed")
        when = (f", signed {self.covered_signed_at:%Y-%m-%d %H:%M:%S} UTC"
                if self.covered_signed_at else ", signed at an unrecorded time (v1 head)")
        tail = (f"; positions {self.covered + 1}–{self.events} ({self.uncovered}) are not "
                "covered by any signed head yet" if self.uncovered > 0 else "")
        return f"the newest valid head covers positions 1–{self.covered}{when}{tail}"


def _what_is_signed(head: Head) -> tuple[Any, ...]:
    return (head.previous_size, head.root_hash, head.prefixes_sha256, head.signed_at_ms)


def heads_in_log(app: Any, findings: list[Finding]) -> dict[int, Head]:
    """The signed heads stored in the log, read from the records' bytes as JSON — never
    through the application's mapper or aggregates, which a tampered record can make raise
    (issue 26, item 15). A head record that cannot be read is a finding at its position."""
    found: dict[int, Head] = {}
    for record in records(app, topics=[_topic()]):
        try:
            head = _head(json.loads(record.state))
            bytes.fromhex(head.root_hash), bytes.fromhex(head.signature)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            findings.append(Finding(record.position, "a signed tree head record cannot be "
                                                     f"read ({type(exc).__name__})"))
            continue
        found.setdefault(head.tree_size, head)
    return found


def verify(app: Any, public: ec.EllipticCurvePublicKey,
           published: Path | Sequence[Path] | None = None) -> Verification:
    """Recompute every leaf and check every signed head; no findings means the log is intact
    as far as the heads reach (``Verification.covered``).

    ``app`` needs only ``name`` and ``recorder`` (``adapters.storage.persistence.raw_log``):
    the log is read as stored bytes, so no tampered record can stop the verification.
    Heads come from the log and from the published copies; a head in a copy that the log
    no longer holds is itself a finding (and is checked all the same)."""
    findings: list[Finding] = []
    leaves = leaf_hashes(app)
    in_log = heads_in_log(app, findings)
    files = [published] if isinstance(published, Path) else list(published or [])
    copied = published_heads(files, app.name)
    for size in sorted(set(copied) - set(in_log)):
        findings.append(Finding(None, f"the signed tree head of size {size} is missing from "
                                      "the log (it is in the published copy)"))
    for size in sorted(set(copied) & set(in_log)):
        if _what_is_signed(copied[size]) != _what_is_signed(in_log[size]):
            findings.append(Finding(None, f"the tree head of size {size} in the log differs "
                                          "from its published copy"))
    heads = [({**copied, **in_log})[size] for size in sorted({**copied, **in_log})]
    newest: Head | None = None
    for head in heads:
        size, previous = head.tree_size, head.previous_size
        root = bytes.fromhex(head.root_hash)
        try:
            public.verify(bytes.fromhex(head.signature), head.signed(app.name),
                          ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            findings.append(Finding(None, f"the tree head of size {size} has a bad signature"))
            continue
        if len(leaves) < size:
            findings.append(Finding(len(leaves) + 1, f"missing: the log ends at {len(leaves)} "
                                                     f"but a signed head covers {size}"))
            continue
        if head.leaf_prefixes is not None:
            prefixes = bytes.fromhex(head.leaf_prefixes)
            first = next((previous + offset + 1 for offset in range(size - previous)
                          if leaves[previous + offset][:PREFIX_BYTES]
                          != prefixes[offset * PREFIX_BYTES:(offset + 1) * PREFIX_BYTES]), None)
            if first is not None:
                findings.append(Finding(first, f"differs from the signed tree head of size "
                                               f"{size}"))
                continue
        if merkle.root(leaves[:size]) != root:
            findings.append(Finding(None, f"the tree of size {size} does not match its "
                                          "signed root"))
            continue
        newest = head
    unique = sorted(set(findings), key=lambda f: (f.position or float("inf"), f.what))
    return Verification(len(leaves), len(heads), unique, newest.tree_size if newest else 0,
                        newest.signed_at if newest else None)


# -- proofs --------------------------------------------------------------------------------
def signed_head(app: Any, size: int | None = None) -> Head:
    """The signed head of ``size`` (default: the latest) from the log."""
    found = {e.tree_size: _head(e.model_dump()) for _, e in read_log(app, topics=[_topic()])}
    if not found:
        raise ValueError(f"{app.name}: no signed tree head yet (partner-ca audit checkpoint)")
    if size is None:
        return found[max(found)]
    if size not in found:
        raise ValueError(f"{app.name}: no signed tree head of size {size} "
                         f"(there are: {', '.join(map(str, sorted(found)))})")
    return found[size]


def inclusion(app: Any, position: int, size: int | None = None) -> dict[str, Any]:
    """An RFC 6962 audit path for the stored event at ``position`` in the signed tree of
    ``size`` leaves, with the record it commits to and the head (all hex)."""
    head = signed_head(app, size)
    if not 1 <= position <= head.tree_size:
        raise ValueError(f"position {position} is not in the signed tree of "
                         f"{head.tree_size} events")
    leaves = leaf_hashes(app)[:head.tree_size]
    record = next(iter(records(app, start=position, stop=position)), None)
    proof = merkle.inclusion_proof(position - 1, leaves)
    return {"application": app.name, "position": position, "leaf_index": position - 1,
            "leaf_data": None if record is None or record.position != position else
            merkle.leaf_data(position, originator_bytes(record), record.originator_version,
                             record.topic, record.state).hex(),
            "leaf_hash": leaves[position - 1].hex(), "audit_path": [h.hex() for h in proof],
            **_head_json(head)}


def consistency(app: Any, old_size: int, new_size: int | None = None) -> dict[str, Any]:
    """An RFC 6962 consistency proof between two signed heads of ``app``."""
    new = signed_head(app, new_size)
    old = signed_head(app, old_size)
    leaves = leaf_hashes(app)[:new.tree_size]
    proof = merkle.consistency_proof(old.tree_size, leaves)
    return {"application": app.name, "old": _head_json(old), "new": _head_json(new),
            "proof": [h.hex() for h in proof]}


def _head_json(head: Head) -> dict[str, Any]:
    return {"tree_size": head.tree_size, "previous_size": head.previous_size,
            "root_hash": head.root_hash, "leaf_prefixes_sha256": head.prefixes_sha256,
            "signed_at_ms": head.signed_at_ms,
            "signed_at": head.signed_at.isoformat() if head.signed_at else None,
            "signature": head.signature}


def run_checkpoints(app: Any, keys: KeyStore, data_dir: Path, interval: float,
                    stop: threading.Event) -> None:
    """``serve``: sign a tree head over ``app``'s log every ``interval`` seconds when it has
    grown (the relay then publishes it on Kafka; a copy goes to heads.jsonl). The leaf
    hashes are kept between runs, so each run reads only the new records."""
    key = audit_key(keys, data_dir / "keys" / "audit.pub.pem")
    leaves: list[bytes] = []

    def step() -> None:
        size = checkpoint(app, key, published=data_dir / "audit" / "heads.jsonl",
                          leaves=leaves)
        log.debug("%s: tree head over %d events", app.name, size)

    run_periodically(f"{app.name}: signing a tree head", step, stop, log, interval=interval,
                     first_wait=interval, on_failure=leaves.clear)  # start over from the store


def _topic() -> str:
    from eventsourcing.utils import get_topic

    return get_topic(TreeHeads.TreeHeadSigned)
