"""Tamper evidence for the event stores: signed Merkle tree heads and their verification.

``checkpoint`` reads an application's whole log (pages of 1,000), computes the
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eventsourcing.application import AggregateNotFoundError

from ca_core import merkle
from ca_core.clock import Clock, SystemClock
from ca_core.eventmodel import read_log
from ca_core.ports import KeyStore
from ca_core.treehead import PREFIX_BYTES, TreeHeads, head_id, signed_bytes

AUDIT_KEY = "audit"
PAGE = 1000


@dataclass(frozen=True)
class Finding:
    position: int | None
    what: str

    def __str__(self) -> str:
        return f"position {self.position}: {self.what}" if self.position else self.what


def leaf_hashes(app: Any, findings: list[Finding] | None = None) -> list[bytes]:
    """Leaf hashes of the stored records in position order; gaps and disorder go to findings."""
    leaves: list[bytes] = []
    start = 1
    while True:
        page = app.recorder.select_notifications(start, PAGE)
        for n in page:
            expected = len(leaves) + 1
            if n.id != expected and findings is not None:
                findings.append(Finding(expected, f"missing (the next stored position is {n.id})"))
                while len(leaves) + 1 < n.id:  # keep positions aligned with the log
                    leaves.append(b"\x00" * 32)
            leaves.append(merkle.leaf_hash(merkle.leaf_data(
                n.id, n.originator_id, n.originator_version, n.topic, n.state)))
        if len(page) < PAGE:
            return leaves
        start = page[-1].id + 1


def _fingerprint(public: ec.EllipticCurvePublicKey) -> str:
    return hashlib.sha256(public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def audit_key(keys: KeyStore, public_file: Path) -> ec.EllipticCurvePrivateKey:
    """The audit signing key (made on first use; its public half written for verifiers)."""
    if not keys.exists(AUDIT_KEY):
        keys.save(AUDIT_KEY, ec.generate_private_key(ec.SECP256R1()))
    key = keys.load(AUDIT_KEY)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    if not public_file.exists():
        public_file.parent.mkdir(parents=True, exist_ok=True)
        public_file.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def _heads(app: Any) -> TreeHeads | None:
    try:
        return cast(TreeHeads, app.repository.get(head_id(app.name)))
    except AggregateNotFoundError:
        return None


def checkpoint(app: Any, key: ec.EllipticCurvePrivateKey, clock: Clock | None = None,
               published: Path | None = None) -> int:
    """Sign the tree over the whole log as it is now; returns the tree size.

    ``published``: a JSON-lines file outside the database that gets a copy of each head —
    whoever can rewrite the store can also drop heads from it, not from copies elsewhere."""
    now = (clock or SystemClock()).now()
    heads = _heads(app) or TreeHeads(application=app.name, timestamp=now)
    leaves = leaf_hashes(app)
    size = len(leaves)
    if size == heads.tree_size:
        return size
    previous = heads.tree_size
    prefixes = b"".join(h[:PREFIX_BYTES] for h in leaves[previous:])
    top = merkle.root(leaves)
    signature = key.sign(signed_bytes(app.name, size, top, previous, prefixes),
                         ec.ECDSA(hashes.SHA256()))
    heads.signed(tree_size=size, previous_size=previous, root_hash=top.hex(),
                 leaf_prefixes=prefixes.hex(), key_fingerprint=_fingerprint(key.public_key()),
                 signature=signature.hex(), timestamp=now)
    app.save(heads)
    if published is not None:
        published.parent.mkdir(parents=True, exist_ok=True)
        with published.open("a") as copy:
            copy.write(json.dumps({"application": app.name, "tree_size": size,
                                   "previous_size": previous, "root_hash": top.hex(),
                                   "leaf_prefixes": prefixes.hex(),
                                   "key_fingerprint": _fingerprint(key.public_key()),
                                   "signature": signature.hex()}) + "\n")
    return size


@dataclass(frozen=True)
class Head:
    tree_size: int
    previous_size: int
    root_hash: str
    leaf_prefixes: str
    signature: str


def verify(app: Any, public: ec.EllipticCurvePublicKey,
           published: Path | None = None) -> tuple[int, int, list[Finding]]:
    """(events checked, heads checked, findings); no findings means the log is intact.

    Heads come from the log and from the published copy; a head in the copy that the log
    no longer holds is itself a finding (and is checked all the same)."""
    findings: list[Finding] = []
    leaves = leaf_hashes(app, findings)
    in_log = {e.tree_size: Head(e.tree_size, e.previous_size, e.root_hash, e.leaf_prefixes,
                                e.signature) for _, e in read_log(app, topics=[_topic()])}
    copied: dict[int, Head] = {}
    if published is not None and published.exists():
        for line in published.read_text().splitlines():
            data = json.loads(line)
            if data.get("application") == app.name:
                copied[int(data["tree_size"])] = Head(
                    int(data["tree_size"]), int(data["previous_size"]), data["root_hash"],
                    data["leaf_prefixes"], data["signature"])
    for size in sorted(set(copied) - set(in_log)):
        findings.append(Finding(None, f"the signed tree head of size {size} is missing from "
                                      "the log (it is in the published copy)"))
    heads = [({**copied, **in_log})[size] for size in sorted({**copied, **in_log})]
    for head in heads:
        size, previous = head.tree_size, head.previous_size
        prefixes = bytes.fromhex(head.leaf_prefixes)
        root = bytes.fromhex(head.root_hash)
        try:
            public.verify(bytes.fromhex(head.signature),
                          signed_bytes(app.name, size, root, previous, prefixes),
                          ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            findings.append(Finding(None, f"the tree head of size {size} has a bad signature"))
            continue
        if len(leaves) < size:
            findings.append(Finding(len(leaves) + 1, f"missing: the log ends at {len(leaves)} "
                                                     f"but a signed head covers {size}"))
            continue
        for offset in range(size - previous):
            position = previous + offset + 1
            stored = prefixes[offset * PREFIX_BYTES:(offset + 1) * PREFIX_BYTES]
            if leaves[position - 1][:PREFIX_BYTES] != stored:
                findings.append(Finding(position, f"differs from the signed tree head of "
                                                  f"size {size}"))
                break
        else:
            if merkle.root(leaves[:size]) != root:
                findings.append(Finding(None, f"the tree of size {size} does not match its "
                                              "signed root"))
    unique = sorted(set(findings), key=lambda f: (f.position or float("inf"), f.what))
    return len(leaves), len(heads), unique


def _topic() -> str:
    from eventsourcing.utils import get_topic

    return get_topic(TreeHeads.TreeHeadSigned)
