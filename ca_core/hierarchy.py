"""The CA's key hierarchy: the root and the issuing CAs — made (the key ceremony), rolled
over, retired when their last certificate has expired — and the issuing keys opened for
signing. A collaborator of the one CA application (``CertificateAuthority.hierarchy``); the
Authority aggregate records every step."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.utils import get_topic

from ca_core.authority import (
    AUTHORITY_ID,
    Authority,
    IssuingCa,
    for_generation,
    issuing_key_name,
)
from ca_core.certificate import Certificate, serial_hex
from ca_core.errors import DomainError, NotReady
from ca_core.eventmodel import DomainEvent, read_log
from ca_core.expiry import LastExpiries
from ca_core.policy import IssuancePolicy
from ca_core.ports import KeyStore
from ca_core.signatures import SigningKey
from ca_core.x509profile import build_issuing, build_root, ca_name, from_pem, to_pem

if TYPE_CHECKING:
    from ca_core.ca import CertificateAuthority

ROOT_KEY, ISSUING_KEY = "root", issuing_key_name(0)
#: an issuing CA no longer current is retired once every certificate it signed has expired,
#: and not before this long after the rollover (a CA process may still sign a batch with it)
RETIRE_GRACE = timedelta(hours=1)
ISSUED_TOPIC = get_topic(Certificate.CertificateIssued)


class NoKeyStore(NotReady):
    code = "no-key-store"


class KeyHierarchy:
    """The root and issuing CAs of one CA application, and their keys."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca
        self._current: tuple[SigningKey, Any, int] | None = None
        self._issuers: dict[int, tuple[SigningKey, Any]] = {}
        self._last_expiries = LastExpiries()  # retire_due's own (expire_due owns the other)

    def keys(self) -> KeyStore:
        if self.ca.keys is None:
            raise NoKeyStore("no key store configured")
        return self.ca.keys

    def initialise(self, root_name: str = "Partner CA Root",
                   issuing_name: str = "Partner CA Issuing") -> Authority:
        """Create the two-tier hierarchy: a root (P-384) and an issuing CA (P-256)."""
        if AUTHORITY_ID in self.ca.repository:
            raise DomainError("the CA is already initialised", code="ca-already-initialised")
        keys = self.keys()
        now = self.ca.clock.now()
        issuance = self.ca.issuance
        # each key made where it lives (a file, or inside the HSM), the root first
        # the key ceremony, each step an event naming its key (in one transaction)
        root_key, root_key_id = keys.generate(ROOT_KEY, "secp384r1")
        org, country = issuance.organization, issuance.country
        root = build_root(root_key, ca_name(root_name, org, country), now)
        authority = Authority(
            root_name=root_name, issuing_name=issuing_name, root_certificate_pem=to_pem(root),
            issuing_certificate_pem="", issuing_key_id="", root_key_id=root_key_id,
            timestamp=now,
        )
        issuing_key, key_id = keys.generate(ISSUING_KEY, "secp256r1")
        issuing = build_issuing(root_key, root, issuing_key, ca_name(issuing_name, org, country),
                                now, issuance)
        authority.issuing_ca_certified(
            generation=0, serial=serial_hex(issuing.serial_number),
            certificate_pem=to_pem(issuing), key_name=ISSUING_KEY, key_id=key_id,
            not_before=issuing.not_valid_before_utc, not_after=issuing.not_valid_after_utc,
            timestamp=now)
        self.ca.save(authority)
        return authority

    def rollover(self, issuing_name: str | None = None) -> IssuingCa:
        """A new issuing CA (key made where it lives, certificate signed by the root),
        current from now on: ``SigningKeyRotated``. Needs the root key. The one it replaces
        keeps its CRL and OCSP until the last certificate it signed has expired."""
        keys = self.keys()
        authority = self.ca.authority()
        now = self.ca.clock.now()
        generation = max(authority.issuing) + 1
        root_key = keys.load(ROOT_KEY)
        root = from_pem(authority.root_certificate_pem)
        name = issuing_name or f"{authority.issuing_name} {generation + 1}"
        key_name = issuing_key_name(generation)
        key, key_id = keys.generate(key_name, "secp256r1")
        issuance = self.ca.issuance
        issuing = build_issuing(root_key, root, key, ca_name(
            name, issuance.organization, issuance.country), now, issuance)
        authority.signing_key_rotated(
            generation=generation, serial=serial_hex(issuing.serial_number),
            certificate_pem=to_pem(issuing), key_name=key_name, key_id=key_id,
            not_before=issuing.not_valid_before_utc, not_after=issuing.not_valid_after_utc,
            previous=authority.current, timestamp=now)
        self.ca.save(authority)
        self._current = None
        return authority.issuing_ca

    def retire_due(self) -> list[int]:
        """Retire every issuing CA that is no longer current and whose certificates have all
        expired (``IssuingCaRetired``); returns the generations retired."""
        authority = self.ca.authority()
        now = self.ca.clock.now()
        self._last_expiries.extend(read_log(self.ca, topics=[ISSUED_TOPIC],
                                            start=self._last_expiries.position + 1))
        retired = []
        for issuing in authority.active():
            if issuing.generation == authority.current:
                continue
            after = authority.issuing.get(issuing.generation + 1)
            last = self._last_expiries.last_expiry.get(issuing.generation, issuing.since)
            if after is not None and now > max(last, after.since + RETIRE_GRACE):
                authority.issuing_ca_retired(generation=issuing.generation, last_expiry=last,
                                             timestamp=now)
                retired.append(issuing.generation)
        if retired:
            self.ca.save(authority)
        return retired

    def issuing_ca_at(self, at: datetime) -> IssuingCa | None:
        """The issuing CA that was current at ``at`` (from the Authority's own history)."""
        found: IssuingCa | None = None
        authority = self.ca.authority()
        for stored in self.ca.repository.event_store.get(AUTHORITY_ID):
            event = cast(DomainEvent, stored)
            if event.timestamp > at:
                break
            if isinstance(event, Authority.CaInitialised) and 0 in authority.issuing:
                found = authority.issuing[0]
            elif isinstance(event, Authority.IssuingCaCertified | Authority.SigningKeyRotated):
                found = authority.issuing[event.generation]
        return found

    def unlock(self) -> None:
        """Open the issuing keys now: a key store that cannot (wrong passphrase, missing key)
        fails here, before anything is accepted, not at the first request."""
        for issuing in self.ca.authority().active():
            self.issuer_of(issuing.generation)

    def chain_pem(self) -> str:
        """The issuing CAs still answering for certificates (the current one first), then
        the root, PEM (R12): every certificate of ours verifies with it."""
        a = self.ca.authority()
        return "".join(i.certificate_pem for i in a.active()) + a.root_certificate_pem

    def issuance_for(self, generation: int) -> IssuancePolicy:
        """The profile of an issuing CA's certificates: its own CRL and caIssuers URLs."""
        p = self.ca.issuance
        if generation == 0:
            return p
        return p.model_copy(update={
            "crl_url": for_generation(p.crl_url, generation),
            "crl_shard_url": for_generation(p.crl_shard_url, generation),
            "ca_issuers_url": for_generation(p.ca_issuers_url, generation)})

    def root_key(self) -> SigningKey:
        return self.keys().load(ROOT_KEY)

    def issuer_of(self, generation: int) -> tuple[SigningKey, Any]:
        """An issuing CA's key and certificate (opened once per process)."""
        found = self._issuers.get(generation)
        if found is None:
            keys = self.keys()
            issuing = self.ca.authority().issuing[generation]
            found = self._issuers[generation] = (keys.load(issuing.key_name),
                                                 from_pem(issuing.certificate_pem))
        return found

    def current_issuer(self) -> tuple[SigningKey, Any, int]:
        """The current issuing CA: key, certificate, generation (see ``follow_rollover``)."""
        if self._current is None:
            generation = self.ca.authority().current
            self._current = (*self.issuer_of(generation), generation)
        return self._current

    def follow_rollover(self) -> None:
        """Before each batch: a rollover made since (``partner-ca ca rollover`` in another
        process) makes the new issuing CA current here too."""
        if self._current is not None and self.ca.authority().current != self._current[2]:
            self._current = None
