"""Certificate login (R5, chapter 5 and 6 of the manual): a fresh challenge signed with the
token's key, or the TLS handshake behind the trusted proxy; the certificate must be ours,
inside its validity, known, good and not being revoked. A collaborator of the Portal
application (``Portal.certificate_login``). The ``UsedChallenge`` aggregate stays in
ca_core/portal.py, where its stored events' topic names it; the Portal hands the class in."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from eventsourcing.persistence import IntegrityError

from ca_core.certificate import CertificateStatus, serial_hex
from ca_core.credentials import keyed_token, same_token
from ca_core.errors import Forbidden, NotAuthenticated
from ca_core.request import CertificateRequest
from ca_core.signatures import verifies
from ca_core.x509profile import subject_identity

if TYPE_CHECKING:
    from ca_core.portal import CertificateSession, Portal, UsedChallenge


class LoginRefused(Forbidden):
    """R5: the certificate cannot log in (the code says why)."""

    code = "certificate-login-refused"


class ChallengeRefused(NotAuthenticated, LoginRefused):
    """R5: the challenge is not ours, too old, or not signed by the certificate's key."""

    code = "challenge-invalid"


def verify_signature(cert: x509.Certificate, data: bytes, signature: bytes) -> None:
    """The certificate's key signed ``data`` (ECDSA or RSA PKCS#1 v1.5, SHA-256)."""
    checked = verifies(cert.public_key(), signature, data)
    if checked is None:
        raise LoginRefused("unsupported certificate key", code="certificate-key-unsupported")
    if not checked:
        raise ChallengeRefused("the challenge signature does not verify with the certificate's "
                               "key", code="challenge-signature-invalid")


class CertificateLogin:
    """Certificate logins for one Portal application (``used``: the UsedChallenge
    aggregate, whose id the store refuses a second time)."""

    def __init__(self, portal: Portal, used: type[UsedChallenge],
                 session: type[CertificateSession]) -> None:
        self.portal, self.used, self.session = portal, used, session

    def new_challenge(self, serial: str = "") -> str:
        """A fresh, server-authenticated challenge for certificate login, valid
        ``challenge_lifetime`` and good for one login; with ``serial``, only for that
        certificate."""
        issued = str(int(self.portal.clock.now().timestamp()))
        nonce = secrets.token_urlsafe(18)
        mac = keyed_token(self.portal.secret, "challenge", issued, nonce, serial)
        return f"{issued}.{nonce}.{serial}.{mac}"

    def with_signature(self, certificate_pem: str, challenge: str,
                       signature: bytes) -> CertificateSession:
        """R5: chains to this CA, inside validity, not revoked, and the key signed our
        challenge."""
        now = self.portal.clock.now()
        nonce, bound_to = self._check_challenge(challenge, now)
        cert, serial, request = self._admitted(certificate_pem, now)
        if bound_to and bound_to != serial:
            raise ChallengeRefused(f"the challenge was issued for certificate {bound_to}",
                                   code="challenge-foreign")
        verify_signature(cert, challenge.encode(), signature)
        try:  # single use, across every portal process (the store refuses a second record)
            self.portal.save(self.used.record(nonce, serial, now))
        except IntegrityError:
            raise ChallengeRefused("the challenge has already been used for a login",
                                   code="challenge-used") from None
        return self.session(request.user_id, request.module, serial, request.id)

    def verified_by_proxy(self, certificate_pem: str) -> CertificateSession:
        """R5 through the TLS proxy: the client proved possession of the key in the TLS
        handshake (chapter 6: the token signs it); everything else is checked here again."""
        _, serial, request = self._admitted(certificate_pem, self.portal.clock.now())
        return self.session(request.user_id, request.module, serial, request.id)

    def _admitted(self, certificate_pem: str,
                  now: datetime) -> tuple[x509.Certificate, str, CertificateRequest]:
        """R5 but the key possession: ours, inside validity, known, good, not being revoked."""
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        except ValueError:
            raise LoginRefused("the certificate is not valid PEM",
                               code="certificate-malformed") from None
        if not self.portal.issued_by_our_ca(cert):
            raise LoginRefused("the certificate was not issued by this CA",
                               code="certificate-foreign")
        serial = serial_hex(cert.serial_number)
        if now < cert.not_valid_before_utc or now > cert.not_valid_after_utc:
            raise LoginRefused(f"certificate {serial} is outside its validity",
                               code="certificate-expired")
        user_id, _module = subject_identity(cert)
        request = self.portal.certificate_request(user_id, serial)
        if request is None:
            raise LoginRefused(f"certificate {serial} is unknown to the portal",
                               code="certificate-unknown")
        source = self.portal.status_source
        status = source.status_of(serial) if source else CertificateStatus.GOOD
        if status == CertificateStatus.GOOD:
            status = request.certificate_status or CertificateStatus.UNKNOWN
        if status != CertificateStatus.GOOD:
            raise LoginRefused(f"certificate {serial} is {status}", code=f"certificate-{status}")
        if request.revocation_pending:  # the user said the key is gone: from that moment on
            raise LoginRefused(f"certificate {serial} is being revoked",
                               code="certificate-revoked")
        return cert, serial, request

    def _check_challenge(self, challenge: str, now: datetime) -> tuple[str, str]:
        """(nonce, the serial it is bound to or "") of a challenge of ours still valid."""
        try:
            issued, nonce, serial, mac = challenge.split(".")
            age = now.timestamp() - int(issued)
        except ValueError:
            raise ChallengeRefused("the challenge is malformed") from None
        if not same_token(mac, keyed_token(self.portal.secret, "challenge", issued, nonce,
                                           serial)):
            raise ChallengeRefused("the challenge was not issued by this portal")
        if age < 0 or age > self.portal.rules.challenge_lifetime.total_seconds():
            raise ChallengeRefused("the challenge has expired", code="challenge-expired")
        return nonce, serial
