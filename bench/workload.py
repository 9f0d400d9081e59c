"""Bulk workload for fault tests and benchmarks: many certificate requests at once in the portal store."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from adapters.client import softtoken
from ca_core.clock import SystemClock
from ca_core.credentials import hash_password
from ca_core.portal import Portal
from ca_core.request import CertificateRequest

_PASSWORD_HASH = hash_password("load test password")


def make_csrs(n: int) -> list[str]:
    return [softtoken.make_csr(softtoken.new_key(), f"LOAD-{i:06d}") for i in range(n)]


def submit_requests(portal: Portal, csrs: Sequence[str], first: int = 0,
                    chunk: int = 500) -> list[UUID]:
    """Record one CsrSubmitted per CSR (user LOAD-<n>, module EPAK), ``chunk`` per transaction."""
    ids: list[UUID] = []
    clock = SystemClock()
    for start in range(0, len(csrs), chunk):
        requests = [
            CertificateRequest.submit(user_id=f"LOAD-{first + start + i:06d}", module="EPAK",
                                      csr_pem=csr, revocation_password_hash=_PASSWORD_HASH,
                                      now=clock.now())
            for i, csr in enumerate(csrs[start:start + chunk])
        ]
        portal.save(*requests)
        ids.extend(r.id for r in requests)
    return ids


def submit_revocations(portal: Portal, request_ids: Sequence[UUID],
                       reason: str = "cessationOfOperation") -> int:
    """Ask the CA (through the portal's outbox) to revoke the certificates of these requests."""
    clock = SystemClock()
    changed = []
    for request_id in request_ids:
        request = portal.request(request_id)
        if request.serial and request.certificate_status == "good" and not request.revocation_pending:
            request.submit_revocation(reason, "load-test", clock.now())
            changed.append(request)
    if changed:
        portal.save(*changed)
    return len(changed)
