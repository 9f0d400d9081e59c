"""The HTTP status of each problem type lives on its error class (no table of codes in the API).
These are the statuses the portal API has always answered with; a class moved to another kind
changes a client-visible status and fails here."""

from __future__ import annotations

import pytest

from adapters.portal.ops_auth import OpsRefused
from adapters.storage.persistence import StoreUnavailable
from ca_core.ca import CaNotInitialised, CertificateNotFound
from ca_core.certificate_login import ChallengeRefused, LoginRefused
from ca_core.errors import DomainError, NotAuthenticated, TooManyAttempts
from ca_core.keypolicy import CsrRejected
from ca_core.otp import OtpRefused, SessionUsed
from ca_core.partner import ModuleRefused
from ca_core.request import (
    CertificateRefused,
    PickupLinkInvalid,
    RequestRefused,
    RevocationPasswordRefused,
)


@pytest.mark.parametrize(("error", "status"), [
    (OtpRefused, 401), (NotAuthenticated, 401), (ChallengeRefused, 401),
    (LoginRefused, 403), (CertificateRefused, 403), (ModuleRefused, 403), (OpsRefused, 403),
    (PickupLinkInvalid, 404), (CertificateNotFound, 404),
    (SessionUsed, 409), (RequestRefused, 409),
    (RevocationPasswordRefused, 422), (CsrRejected, 422), (DomainError, 422),
    (TooManyAttempts, 429), (CaNotInitialised, 503), (StoreUnavailable, 503),
])
def test_status_is_on_the_class(error: type[DomainError], status: int) -> None:
    assert error("x").http_status == status


def test_a_mixed_kind_keeps_its_family() -> None:
    """``except OtpRefused`` still catches a used session; ``except LoginRefused`` a bad
    challenge; only the status differs."""
    assert isinstance(SessionUsed("x"), OtpRefused)
    assert isinstance(ChallengeRefused("x"), LoginRefused)
    assert SessionUsed("x").code == "session-used"


def test_every_domain_error_has_a_known_status() -> None:
    def all_subclasses(cls: type) -> set[type]:
        return {cls} | {s for c in cls.__subclasses__() for s in all_subclasses(c)}
    for cls in all_subclasses(DomainError):
        assert cls.http_status in {401, 403, 404, 409, 422, 429, 503}, cls
