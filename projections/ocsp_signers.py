"""The delegated OCSP signers as recorded on the CA's log, for whoever signs with them: the
OCSP workers (requests with a nonce) read them; the CA role's rotation
(adapters/ca/ocsp_signing.py) issues new ones and then reads them the same way."""

from __future__ import annotations

from ca_core.ca import CertificateAuthority
from ca_core.errors import DomainError
from ca_core.ocsp import Signer


class SignerCache:
    """The delegated signer of each active issuing CA, loaded from what is recorded (never
    issues one; opens only the delegated keys). Never read per request: ``reload`` when the
    store says something changed."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca
        self._current: dict[int, Signer] | None = None
        self._generations: dict[str, int] = {}
        self._now_current = 0
        self._looked_for: set[str] = set()  # unknown serials already looked up once

    def __call__(self, generation: int | None = None) -> Signer:
        current = self.current()
        found = current.get(self._now_current if generation is None else generation)
        if found is None:
            raise DomainError(f"issuing CA {generation} is retired: no OCSP signer",
                              code="issuing-ca-retired")
        return found

    def current(self) -> dict[int, Signer]:
        if self._current is None:
            self.reload()
        assert self._current is not None
        return self._current

    def generation_of(self, signer_serial: str) -> int:
        """Which issuing CA a signer belongs to; a signer not known yet (issued since this
        cache last looked, by the CA role) makes it look again once."""
        if signer_serial not in self._generations and signer_serial not in self._looked_for:
            self._looked_for.add(signer_serial)
            self._remember()
        return self._generations.get(signer_serial, 0)

    def _remember(self) -> None:
        authority = self.ca.authority()
        self._generations = dict(authority.signer_generations)
        self._now_current = authority.current

    def reload(self) -> None:
        self._remember()  # which signer is whose, even where no delegated key is at hand
        try:
            self._current = {ca.generation: self.ca.ocsp.current(ca.generation)
                             for ca in self.ca.authority().active()}
        except DomainError:
            self._current = None  # no delegated key at hand; asked again on the next change
            raise
