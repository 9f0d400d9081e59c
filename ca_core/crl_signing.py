"""CRL signing: the next full CRL of an issuing CA (and its shards), numbered and recorded
(``CrlPublished``) on the Authority. A collaborator of the one CA application
(``CertificateAuthority.crls``); the CA role's publishing (adapters/ca/publishing.py) decides
when, and writes the files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from eventsourcing.utils import get_topic

from ca_core.certificate import Certificate
from ca_core.conflicts import on_conflict
from ca_core.crl import MAX_CRL_VALIDITY, RevokedEntry, build_crl
from ca_core.eventmodel import read_log

if TYPE_CHECKING:
    from ca_core.ca import CertificateAuthority

REVOKED_TOPIC = get_topic(Certificate.CertificateRevoked)


@dataclass(frozen=True)
class PublishedCrls:
    """DER of the full CRL and of each shard (empty when sharding is off)."""

    full: bytes
    shards: dict[int, bytes]


class RevokedIssuers:
    """Which issuing CA signed each revoked certificate (from CertificateRevoked events; only
    those of later issuing CAs are kept, the first one's being the default)."""

    def __init__(self) -> None:
        self.generations: dict[str, int] = {}
        self.position = 0

    def extend(self, events: Iterable[tuple[int, Any]]) -> None:
        for position, event in events:
            if getattr(event, "issuer_generation", 0):
                self.generations[event.serial] = event.issuer_generation
            self.position = position


class CrlSigning:
    """Signs the CRLs of one CA application's issuing CAs."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca
        self._revoked_issuers = RevokedIssuers()

    def generation_of(self, entries: Sequence[RevokedEntry]) -> dict[int, list[RevokedEntry]]:
        """Revoked entries by the issuing CA that signed them (from the CA's log)."""
        self._revoked_issuers.extend(read_log(self.ca, topics=[REVOKED_TOPIC],
                                              start=self._revoked_issuers.position + 1))
        found: dict[int, list[RevokedEntry]] = {}
        of = self._revoked_issuers.generations.get
        for entry in entries:
            found.setdefault(of(entry.serial, 0), []).append(entry)
        return found

    def publish_crl(self, entries: list[RevokedEntry], log_position: int,
                    validity: timedelta = timedelta(days=1)) -> bytes:
        """Sign the next full CRL (CRL number + 1) and record CrlPublished; returns DER."""
        return self.publish_crls(entries, log_position, validity).full

    def publish_crls(self, entries: list[RevokedEntry], log_position: int,
                     validity: timedelta = timedelta(days=1),
                     generation: int | None = None) -> PublishedCrls:
        """The next full CRL of one issuing CA (default: the current one) and, when sharding
        is on, one CRL per shard, all with its next CRL number; one CrlPublished records them
        and the log position they reflect. ``entries``: that CA's revoked certificates
        (``generation_of`` sorts them).

        The Authority is shared (the OCSP role records its signers there): when another
        process recorded first, the CRL is signed again with the number after theirs."""
        return on_conflict()(self._publish_crls, entries, log_position, validity, generation)

    def _publish_crls(self, entries: list[RevokedEntry], log_position: int,
                      validity: timedelta, generation: int | None) -> PublishedCrls:
        authority = self.ca.authority()
        generation = authority.current if generation is None else generation
        issuer_key, issuer = self.ca.hierarchy.issuer_of(generation)
        policy = self.ca.hierarchy.issuance_for(generation)
        now = self.ca.clock.now()
        number = authority.issuing[generation].crl_number + 1
        full = build_crl(issuer_key, issuer, entries, number, now, validity)
        shards: dict[int, bytes] = {}
        if policy.crl_shards:
            by_shard: dict[int, list[RevokedEntry]] = {k: [] for k in range(policy.crl_shards)}
            for entry in entries:
                by_shard[policy.crl_shard(int(entry.serial, 16)) or 0].append(entry)
            shards = {k: build_crl(issuer_key, issuer, shard, number, now, validity,
                                   distribution_point=policy.crl_shard_url.format(shard=k))
                      for k, shard in by_shard.items()}
        this_update = now.replace(microsecond=0)
        authority.crl_published(crl_number=number, this_update=this_update,
                                next_update=this_update + min(validity, MAX_CRL_VALIDITY),
                                revoked_count=len(entries), log_position=log_position,
                                timestamp=now, shards=len(shards), generation=generation)
        self.ca.save(authority)
        return PublishedCrls(full, shards)
