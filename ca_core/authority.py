"""Authority aggregate: the CA hierarchy this service signs with.

One root and one or more *issuing CAs* ("generations" 0, 1, …). The key ceremony
(``CaInitialised``: the root key and its certificate; ``IssuingCaCertified``: the first
issuing key and its certificate) and every rollover (``SigningKeyRotated``: a new issuing
key certified by the root, current from then on) name each key by its id (a file
fingerprint, or ``pkcs11:<token serial>:<CKA_ID>``), never a secret. An issuing CA that is
no longer current keeps its CRL and OCSP until the last certificate it signed has expired;
then ``IssuingCaRetired``. CRL numbers and delegated OCSP signers are per issuing CA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from ca_core.eventmodel import Aggregate

AUTHORITY_ID = uuid5(NAMESPACE_URL, "partner-ca:authority")


def issuing_key_name(generation: int) -> str:
    """The key store name of an issuing CA's key: ``issuing`` for the first, as always."""
    return "issuing" if generation == 0 else f"issuing-g{generation}"


def for_generation(name: str, generation: int) -> str:
    """A file name or URL of the first issuing CA, for another: ``issuing.crl`` →
    ``issuing-g1.crl`` (the suffix before the last extension of the last path segment)."""
    if generation == 0:
        return name
    head, _, last = name.rpartition("/")
    stem, dot, ext = last.rpartition(".")
    last = f"{stem}-g{generation}.{ext}" if dot else f"{last}-g{generation}"
    return f"{head}/{last}" if head or name.startswith("/") else last


@dataclass
class IssuingCa:
    """One issuing CA as recorded: its certificate and key, CRL state and OCSP signer."""

    generation: int
    certificate_pem: str
    key_name: str
    key_id: str
    since: datetime
    retired_at: datetime | None = None
    crl_number: int = 0
    crl_log_position: int = 0
    crl_this_update: datetime | None = None
    crl_next_update: datetime | None = None
    ocsp_signer_pem: str | None = None
    ocsp_signer_key: str | None = None
    ocsp_signer_not_after: datetime | None = None

    @property
    def active(self) -> bool:
        return self.retired_at is None


class Authority(Aggregate):
    """The root and the issuing CA certificates (keys live in the key store, never in events)."""

    class CaInitialised(Aggregate.Created):
        private_fields: ClassVar[frozenset[str]] = frozenset(
            {"root_certificate_pem", "issuing_certificate_pem"})
        later_fields: ClassVar[frozenset[str]] = frozenset({"root_key_id"})
        root_name: str
        issuing_name: str
        root_certificate_pem: str
        #: stores before the ceremony was split: the first issuing CA came in this event
        issuing_certificate_pem: str
        issuing_key_id: str
        root_key_id: str = ""

    class IssuingCaEvent(Aggregate.Event):
        """What both ways of certifying an issuing CA record."""

        private_fields: ClassVar[frozenset[str]] = frozenset({"certificate_pem"})
        generation: int
        serial: str
        certificate_pem: str
        key_name: str
        key_id: str
        not_before: datetime
        not_after: datetime

    class IssuingCaCertified(IssuingCaEvent):
        """The key ceremony's second step: the first issuing key, certified by the root."""

    class SigningKeyRotated(IssuingCaEvent):
        """Rollover: a new issuing CA, current from now on; ``previous`` keeps its CRL and
        OCSP until its certificates have expired."""

        previous: int

    class IssuingCaRetired(Aggregate.Event):
        generation: int
        last_expiry: datetime

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
        root_key_id: str = "",
    ) -> None:
        self.root_name = root_name
        self.issuing_name = issuing_name
        self.root_certificate_pem = root_certificate_pem
        self.root_key_id = root_key_id
        self.issuing: dict[int, IssuingCa] = {}
        self.current = 0
        #: every delegated OCSP signer ever certified (serial) → its issuing CA
        self.signer_generations: dict[str, int] = {}
        if issuing_certificate_pem:  # recorded before IssuingCaCertified existed
            self.issuing[0] = IssuingCa(0, issuing_certificate_pem, issuing_key_name(0),
                                        issuing_key_id, timestamp)

    @event(IssuingCaCertified)
    def issuing_ca_certified(self, generation: int, serial: str, certificate_pem: str,
                             key_name: str, key_id: str, not_before: datetime,
                             not_after: datetime, timestamp: datetime) -> None:
        self.issuing[generation] = IssuingCa(generation, certificate_pem, key_name, key_id,
                                             timestamp)
        self.current = generation

    @event(SigningKeyRotated)
    def signing_key_rotated(self, generation: int, serial: str, certificate_pem: str,
                            key_name: str, key_id: str, not_before: datetime,
                            not_after: datetime, previous: int, timestamp: datetime) -> None:
        self.issuing[generation] = IssuingCa(generation, certificate_pem, key_name, key_id,
                                             timestamp)
        self.current = generation

    @event(IssuingCaRetired)
    def issuing_ca_retired(self, generation: int, last_expiry: datetime,
                           timestamp: datetime) -> None:
        self.issuing[generation].retired_at = timestamp

    # -- the current issuing CA (what new certificates are signed with) -----------------
    @property
    def issuing_ca(self) -> IssuingCa:
        return self.issuing[self.current]

    @property
    def issuing_certificate_pem(self) -> str:
        return self.issuing_ca.certificate_pem

    @property
    def issuing_key_id(self) -> str:
        return self.issuing_ca.key_id

    def active(self) -> list[IssuingCa]:
        """The issuing CAs still answering for their certificates, the current one first."""
        return sorted((ca for ca in self.issuing.values() if ca.active),
                      key=lambda ca: (ca.generation != self.current, -ca.generation))

    @property
    def crl_number(self) -> int:
        return self.issuing_ca.crl_number

    @property
    def crl_log_position(self) -> int:
        return self.issuing_ca.crl_log_position

    @property
    def ocsp_signer_pem(self) -> str | None:
        return self.issuing_ca.ocsp_signer_pem

    @property
    def ocsp_signer_key(self) -> str | None:
        return self.issuing_ca.ocsp_signer_key

    @property
    def ocsp_signer_not_after(self) -> datetime | None:
        return self.issuing_ca.ocsp_signer_not_after

    class CrlPublished(Aggregate.Event):
        later_fields: ClassVar[frozenset[str]] = frozenset({"generation"})
        crl_number: int
        this_update: datetime
        next_update: datetime
        revoked_count: int
        log_position: int
        shards: int = 0  # shard CRLs published beside the full one, same number and times
        generation: int = 0  # of the issuing CA that signed it

    @event(CrlPublished)
    def crl_published(self, crl_number: int, this_update: datetime, next_update: datetime,
                      revoked_count: int, log_position: int, timestamp: datetime,
                      shards: int = 0, generation: int = 0) -> None:
        """A full CRL was signed; ``log_position`` is the last CA event it reflects."""
        ca = self.issuing[generation]
        ca.crl_number = crl_number
        ca.crl_log_position = log_position
        ca.crl_this_update = this_update
        ca.crl_next_update = next_update

    class OcspSignerIssued(Aggregate.Event):
        later_fields: ClassVar[frozenset[str]] = frozenset({"generation"})
        serial: str
        not_before: datetime
        not_after: datetime
        certificate_pem: str
        key_name: str
        generation: int = 0  # of the issuing CA that certified it

    @event(OcspSignerIssued)
    def ocsp_signer_issued(self, serial: str, not_before: datetime, not_after: datetime,
                           certificate_pem: str, key_name: str, timestamp: datetime,
                           generation: int = 0) -> None:
        """A delegated OCSP signing certificate; its key is in the key store under ``key_name``."""
        ca = self.issuing[generation]
        self.signer_generations[serial] = generation
        ca.ocsp_signer_pem = certificate_pem
        ca.ocsp_signer_key = key_name
        ca.ocsp_signer_not_after = not_after
