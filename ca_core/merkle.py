"""Merkle tree over an event log, as RFC 6962 §2.1 (and RFC 9162 §2.1) define it.

Leaf hash  = SHA-256(0x00 || leaf data); node hash = SHA-256(0x01 || left || right);
the tree of n leaves splits at k, the largest power of two smaller than n. Audit
paths (inclusion proofs) and consistency proofs follow RFC 6962 §2.1.1/§2.1.2 and
are verified with the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2, so anyone can
check them with a few lines of code (docs/audit.md specifies the leaf data).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from uuid import UUID

LEAF_PREFIX, NODE_PREFIX = b"\x00", b"\x01"
LEAF_VERSION = b"partner-ca/event-leaf/v1"
ABSENT_VERSION = b"partner-ca/absent-leaf/v1"


def leaf_data(position: int, originator_id: UUID | bytes, originator_version: int, topic: str,
              state: bytes) -> bytes:
    """The bytes a leaf commits to: one stored event record, including its log position
    (``originator_id`` as a UUID or its 16 bytes)."""
    encoded_topic = topic.encode()
    raw_id = originator_id if isinstance(originator_id, bytes) else originator_id.bytes
    return b"".join((LEAF_VERSION, struct.pack(">QQ", position, originator_version), raw_id,
                     struct.pack(">I", len(encoded_topic)), encoded_topic,
                     struct.pack(">I", len(state)), state))


def absent_leaf(position: int) -> bytes:
    """The leaf hash of a position the log does not hold (a sequence number a rolled-back
    transaction used): the tree commits to its absence, so a row deleted later shows."""
    return leaf_hash(ABSENT_VERSION + struct.pack(">Q", position))


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of the given leaf hashes (iteratively: a million leaves take about a second)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    # RFC 6962's recursive split equals pairing left to right and carrying an odd last node up
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1 for leaf ``index`` (0-based)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 6962 §2.1.2: the tree of ``old_size`` leaves is a prefix."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"no consistency proof from {old_size} to {n}")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def all_inclusion_proofs(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root and every leaf's PATH at once (what ``inclusion_proof`` gives leaf by leaf),
    in O(n log n): each level pairs left to right and carries an odd last node up."""
    if not leaves:
        raise ValueError("no proofs in an empty tree")
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        levels.append(paired)
    proofs = []
    for index in range(len(leaves)):
        path, at = [], index
        for level in levels[:-1]:
            sibling = at ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            at >>= 1
        proofs.append(path)
    return levels[-1][0], proofs


def root_from_inclusion(index: int, size: int, leaf: bytes,
                        proof: Sequence[bytes]) -> bytes | None:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` in a tree of ``size``
    (RFC 9162 §2.1.3.2 without its last comparison), or None if the proof cannot be one."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     expected_root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    return root_from_inclusion(index, size, leaf, proof) == expected_root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2."""
    if old_size == new_size:
        return old_root == new_root and not proof
    if not 0 < old_size < new_size or not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
