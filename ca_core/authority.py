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
        self.crl_log_position = 0
        self.crl_this_update: datetime | None = None
        self.crl_next_update: datetime | None = None
        self.ocsp_signer_pem: str | None = None
        self.ocsp_signer_key: str | None = None
        self.ocsp_signer_not_after: datetime | None = None

    class CrlPublished(Aggregate.Event):
        crl_number: int
        this_update: datetime
        next_update: datetime
        revoked_count: int
        log_position: int
        shards: int = 0  # shard CRLs published beside the full one, same number and times

    @event(CrlPublished)
    def crl_published(self, crl_number: int, this_update: datetime, next_update: datetime,
                      revoked_count: int, log_position: int, timestamp: datetime,
                      shards: int = 0) -> None:
        """A full CRL was signed; ``log_position`` is the last CA event it reflects."""
        self.crl_number = crl_number
        self.crl_log_position = log_position
        self.crl_this_update = this_update
        self.crl_next_update = next_update

    class OcspSignerIssued(Aggregate.Event):
        serial: str
        not_before: datetime
        not_after: datetime
        certificate_pem: str
        key_name: str

    @event(OcspSignerIssued)
    def ocsp_signer_issued(self, serial: str, not_before: datetime, not_after: datetime,
                           certificate_pem: str, key_name: str, timestamp: datetime) -> None:
        """A delegated OCSP signing certificate; its key is in the key store under ``key_name``."""
        self.ocsp_signer_pem = certificate_pem
        self.ocsp_signer_key = key_name
        self.ocsp_signer_not_after = not_after
