"""Baseline: certificates issued per second in-process (EC P-256 issuing key), SQLite and PostgreSQL.

Usage: python bench/issuance.py [N] [database_url]
Measures the CA side only: N CertificateRequested messages, each checked (CSR
signature, key policy, key registry), signed and recorded with its tracking row.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from eventsourcing.persistence import Tracking
from rich.progress import track

from adapters import softtoken
from adapters.bootstrap import build
from adapters.settings import Settings
from ca_core.clock import SystemClock
from ca_core.messages import CertificateRequested


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    url = sys.argv[2] if len(sys.argv) > 2 else ""
    if url:  # start from empty stores
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("portal_events", "portal_tracking", "ca_events", "ca_tracking"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
    with tempfile.TemporaryDirectory() as tmp:
        system = build(Settings(data_dir=Path(tmp), database_url=url), clock=SystemClock(),
                       passphrase="benchmark passphrase")
        system.ca.initialise()
        now = SystemClock().now()
        messages = [
            CertificateRequested(message_id=str(i), occurred_at=now, request_id=uuid4(),
                                 user_id=f"P24-{i:06d}", module="EPAK",
                                 csr_pem=softtoken.make_csr(softtoken.new_key(), "x"),
                                 renews_serial=None)
            for i in track(range(n), description="making CSRs")
        ]
        started = time.perf_counter()
        for i, msg in enumerate(track(messages, description="issuing")):
            system.ca.process_event(msg, Tracking("bench", i + 1))  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        system.close()
    store = "PostgreSQL" if url else "SQLite"
    print(f"{n} certificates in {elapsed:.2f} s on {store}: {n / elapsed:.0f} certificates/s")


if __name__ == "__main__":
    main()
