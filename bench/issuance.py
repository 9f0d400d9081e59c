"""Baseline: certificates issued per second in-process (EC P-256 issuing key), SQLite and PostgreSQL.

Usage: python bench/issuance.py [N] [database_url] [batch]
Measures the CA side only: N CertificateRequested messages, each checked (CSR
signature, key policy, key registry), signed and recorded; ``batch`` messages
(default 1) share one transaction with their tracking row, as a Kafka inbox does.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from eventsourcing.persistence import Tracking
from rich.progress import track

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import build
from adapters.settings import Settings
from ca_core.clock import SystemClock
from ca_core.messages import CertificateRequested


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    url = sys.argv[2] if len(sys.argv) > 2 else ""
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    if url:  # start from empty stores
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("portal_events", "portal_tracking", "ca_events", "ca_tracking"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
    with tempfile.TemporaryDirectory() as tmp:
        system = build(Settings(data_dir=Path(tmp), database_url=url), clock=SystemClock(),
                       passphrase="benchmark passphrase")
        system.ca.hierarchy.initialise()
        now = SystemClock().now()
        messages = [
            CertificateRequested(message_id=str(i), occurred_at=now, request_id=uuid4(),
                                 user_id=f"P24-{i:06d}", module="EPAK",
                                 csr_pem=softtoken.make_csr(softtoken.new_key(), "x"),
                                 renews_serial=None)
            for i in track(range(n), description="making CSRs")
        ]
        started = time.perf_counter()
        for i in track(range(0, n, batch), description="issuing"):
            system.ca.process_batch(messages[i:i + batch], Tracking("bench", i + 1))
        elapsed = time.perf_counter() - started
        system.close()
    store = "PostgreSQL" if url else "SQLite"
    print(f"{n} certificates in {elapsed:.2f} s on {store}, batches of {batch}: "
          f"{n / elapsed:.0f} certificates/s")


if __name__ == "__main__":
    main()
