"""Signed tree heads: an application's log commits to its own history (RFC 6962 style).

A ``TreeHeadSigned`` event records the Merkle root over the log's first
``tree_size`` stored events, the 8-byte prefixes of the leaf hashes added since
the previous head (so a verifier can name the exact position that changed), the
time it was signed (milliseconds since the Unix epoch, as RFC 6962's tree heads
carry it), and an ECDSA P-256 signature by the audit key over all of it. The
event is itself a leaf of the next head. Heads signed before the time was signed
in (format v1, ``signed_at_ms`` None) verify as they always did.
"""

from __future__ import annotations

import hashlib
import struct
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from ca_core.eventmodel import Aggregate

PREFIX_BYTES = 8
HEAD_VERSION = b"partner-ca/tree-head/v1"  # without a signed time (older heads)
HEAD_VERSION_TIMED = b"partner-ca/tree-head/v2"


def head_id(application: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"partner-ca:tree-heads:{application}")


def signed_bytes(application: str, tree_size: int, root_hash: bytes, previous_size: int,
                 leaf_prefixes: bytes, signed_at_ms: int | None) -> bytes:
    """What the audit key signs (docs/audit.md)."""
    return head_bytes(application, tree_size, root_hash, previous_size,
                      hashlib.sha256(leaf_prefixes).digest(), signed_at_ms)


def head_bytes(application: str, tree_size: int, root_hash: bytes, previous_size: int,
               prefixes_sha256: bytes, signed_at_ms: int | None) -> bytes:
    """``signed_bytes`` from the SHA-256 of the leaf prefixes (what copies of a head outside
    the database carry, e.g. on Kafka, instead of the prefixes themselves).

    v2 (``signed_at_ms`` given): "partner-ca/tree-head/v2" ‖ u32(len(app)) ‖ app ‖
    u64(tree_size) ‖ u64(previous_size) ‖ u64(signed_at_ms) ‖ root ‖ SHA-256(prefixes);
    v1 (older heads): the same without the version's time and with "…/v1"."""
    name = application.encode()
    if signed_at_ms is None:
        return b"".join((HEAD_VERSION, struct.pack(">I", len(name)), name,
                         struct.pack(">QQ", tree_size, previous_size), root_hash,
                         prefixes_sha256))
    return b"".join((HEAD_VERSION_TIMED, struct.pack(">I", len(name)), name,
                     struct.pack(">QQQ", tree_size, previous_size, signed_at_ms), root_hash,
                     prefixes_sha256))


def milliseconds(moment: datetime) -> int:
    """A signing time as tree heads carry it: whole milliseconds since the Unix epoch."""
    return int(moment.timestamp() * 1000)


class TreeHeads(Aggregate):
    """The signed tree heads of one application's log."""

    class TreeHeadsStarted(Aggregate.Created):
        application: str

    class TreeHeadSigned(Aggregate.Event):
        tree_size: int
        previous_size: int
        root_hash: str  # hex
        leaf_prefixes: str  # hex, PREFIX_BYTES per leaf previous_size+1 … tree_size
        key_fingerprint: str  # SHA-256 of the audit public key (SPKI DER), hex
        signature: str  # hex, ECDSA P-256 with SHA-256 over signed_bytes(...)
        #: when it was signed, signed with it (v2); None in heads of format v1
        signed_at_ms: int | None = None

    @staticmethod
    def create_id(*_: Any, application: str = "", **__: Any) -> UUID:
        return head_id(application)

    @event(TreeHeadsStarted)
    def __init__(self, application: str, timestamp: datetime) -> None:
        self.application = application
        self.tree_size = 0

    @event(TreeHeadSigned)
    def signed(self, tree_size: int, previous_size: int, root_hash: str, leaf_prefixes: str,
               key_fingerprint: str, signature: str, timestamp: datetime,
               signed_at_ms: int | None = None) -> None:
        self.tree_size = tree_size
