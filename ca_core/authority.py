"""Authority aggregate: the CA hierarchy this service signs with."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from ca_core.eventmodel import Aggregate

AUTHORITY_ID = uuid5(NAMESPACE_URL, "partner-ca:authority")


class Authority(Aggregate):
    """The root and issuing CA certificates (keys live in the key store, never in events)."""

    class CaInitialised(Aggregate.Created):
        private_fields: ClassVar[frozenset[str]] = frozenset(
            {"root_certificate_pem", "issuing_certificate_pem"})
        root_name: str
        issuing_name: str
        root_certificate_pem: str
        issuing_certificate_pem: str
        issuing_key_id: str

    @staticmethod
    def create_id(*_: Any, **__: Any) -> UUID:
        return AUTHORITY_ID

    @event(CaInitialised)
    def __init__(
        self,
        root_name: str,
        issuing_name: str,
        root_certificate_pem: str,
        issuing_certificate_pem: str,
        issuing_key_id: str,
        timestamp: datetime,
    ) -> None:
        self.root_name = root_name
        self.issuing_name = issuing_name
        self.root_certificate_pem = root_certificate_pem
        self.issuing_certificate_pem = issuing_certificate_pem
        self.issuing_key_id = issuing_key_id
        self.crl_number = 0

    class CrlPublished(Aggregate.Event):
        crl_number: int
        this_update: datetime
        next_update: datetime
        revoked_count: int
        log_position: int

    @event(CrlPublished)
    def crl_published(self, crl_number: int, this_update: datetime, next_update: datetime,
                      revoked_count: int, log_position: int, timestamp: datetime) -> None:
        """A full CRL was signed; ``log_position`` is the last CA event it reflects."""
        self.crl_number = crl_number
