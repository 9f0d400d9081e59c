"""Ports: the small protocols the applications need from the outside world."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ca_core.signatures import SigningKey


class KeyStore(Protocol):
    """Where CA private keys live, encrypted at rest (a file by default, PKCS#11 beside it)."""

    def generate(self, name: str, curve: str) -> tuple[SigningKey, str]:
        """A new EC key (``curve``: ``secp256r1``/``secp384r1``) made where it will live — in
        the token for an HSM — stored under ``name``; with a key id for the record (never a
        secret). FileExistsError if ``name`` is taken."""
        ...

    def save(self, name: str, key: SigningKey) -> str:
        """Store ``key`` under ``name``; returns a key id for the record."""
        ...

    def load(self, name: str) -> SigningKey: ...

    def exists(self, name: str) -> bool: ...


class Transport(Protocol):
    """Carries messages between the Portal and the CA (in-process by default, Kafka later)."""

    def pump(self) -> int:
        """Deliver everything pending in both directions; returns how many messages were delivered."""
        ...


class StatusSource(Protocol):
    """Where the portal asks whether a certificate is good (R5): the CA's status view."""

    def status_of(self, serial: str) -> str:
        """``good``, ``revoked``, ``expired`` or ``unknown``."""
        ...


class BulkReader(Protocol):
    """Reads the stored events of many aggregates in one query (one round trip per batch)."""

    def __call__(self, ids: Sequence[UUID]) -> Mapping[UUID, Sequence[StoredEvent]]:
        """Stored events of each id that has any, in version order; absent ids are left out."""
        ...
