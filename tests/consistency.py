"""The invariants every fault test checks: nothing lost, nothing doubled, both stores agree."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ca_core.certificate import Certificate, SigningRequest
from ca_core.eventmodel import all_events
from ca_core.request import CertificateRequest


def check_consistency(portal: Any, ca: Any) -> dict[str, int]:
    portal_events = [e for _, e in all_events(portal)]
    ca_events = [e for _, e in all_events(ca)]
    submitted = {e.originator_id for e in portal_events
                 if isinstance(e, CertificateRequest.CsrSubmitted)}
    ready = {e.originator_id: e.serial for e in portal_events
             if isinstance(e, CertificateRequest.CertificateReady)}
    issued = [e for e in ca_events if isinstance(e, Certificate.CertificateIssued)]
    accepted = {e.request_id: e.serial for e in ca_events
                if isinstance(e, SigningRequest.SigningRequestAccepted)}
    # every request has exactly one certificate, and both stores name the same serial
    assert set(ready) == submitted, f"{len(submitted - set(ready))} requests without certificate"
    per_request = Counter(e.request_id for e in issued)
    assert all(n == 1 for n in per_request.values()), "a request got two certificates"
    assert {e.request_id for e in issued} == submitted
    assert accepted == ready, "portal and CA disagree on serials"
    serials = [e.serial for e in issued]
    assert len(serials) == len(set(serials)), "a serial appears twice"
    # every revocation the portal asked for reached the CA exactly once
    asked = Counter(e.serial for e in portal_events
                    if isinstance(e, CertificateRequest.RevocationSubmitted))
    revoked = Counter(e.serial for e in ca_events
                      if isinstance(e, Certificate.CertificateRevoked))
    confirmed = Counter(e.serial for e in portal_events
                        if isinstance(e, CertificateRequest.RevocationConfirmed))
    assert set(asked) == set(revoked), "a revocation was lost"
    assert all(n == 1 for n in revoked.values()), "a certificate was revoked twice"
    assert confirmed == revoked, "portal and CA disagree on revocations"
    return {"requests": len(submitted), "certificates": len(issued), "revocations": len(revoked)}
