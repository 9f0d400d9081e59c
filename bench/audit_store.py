"""A CA event store of at least ``--events`` events, then `audit verify` and `audit replay` on it.

Usage:
  python -m bench.audit_store [--events 1000000] [--database-url URL] [--data-dir DIR]
                              [--reuse] [--repeat 3]

1. Fresh stores (the PostgreSQL tables are dropped first; the database itself must exist).
2. Through the CA's real issuance path (CSR checked, key registry, serial, signature;
   batches of 500 messages per transaction, as the Kafka inbox does), a clock that
   starts 400 days ago: half the certificates, 380 days later the expiry sweep (they
   all expire), then the other half; every tenth good certificate revoked. About
   3.6 events per certificate (SigningRequestAccepted, CertificateIssued,
   PublicKeyRegistered; revocations and expiries) — 4.6 in stores built before
   session 4, where a PublicKeyCertified followed each PublicKeyRegistered.
3. The live views as the serve roles keep them: revocation status (catch-up) and the
   OCSP response store (the maintainer pre-signs every response), and a signed tree head.
4. Times ``audit verify`` (every leaf re-hashed, the head checked) and ``audit replay``
   (every projection rebuilt into a scratch store and compared row by row), each
   ``--repeat`` times, and prints events/s and their median.

``--reuse`` skips 1–3 when the data directory already holds a store.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from uuid import uuid4

from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adapters.audit.replay import replay, total_positions
from adapters.audit.tree_heads import audit_key, checkpoint, verify
from adapters.client import softtoken
from adapters.entrypoints.audit_wiring import live_stores
from adapters.entrypoints.bootstrap import build_ca, build_portal
from adapters.entrypoints.ca_wiring import ocsp_publisher_of
from adapters.settings import Settings
from adapters.storage.migrate import apply_migrations
from adapters.storage.persistence import status_view
from ca_core.certificate import Certificate
from ca_core.clock import ManualClock, SystemClock
from ca_core.eventmodel import read_log
from ca_core.messages import CertificateRequested
from projections.feed import catch_up
from projections.status import RevocationStatusProjection

console = Console()
PASSPHRASE = "benchmark passphrase"
EVENTS_PER_CERTIFICATE = 3.6  # 4.6 before a new key took one event instead of two
BATCH = 500


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def fresh(settings: Settings) -> None:
    """Empty stores: a new data directory; on PostgreSQL the database is dropped and created
    again (connecting to the server's ``postgres`` database) and migrated."""
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    settings.data_dir.mkdir(parents=True)
    if settings.database_url:
        import psycopg
        from psycopg import sql

        target = psycopg.conninfo.conninfo_to_dict(settings.database_url)
        name = str(target["dbname"])
        admin = psycopg.conninfo.make_conninfo(settings.database_url, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        apply_migrations(settings.database_url)


def issue(ca: object, clock: ManualClock, count: int, progress: Progress, offset: int) -> None:
    task = progress.add_task(f"issuing {count:,} certificates", total=count)
    batch: list[CertificateRequested] = []
    for i in range(count):
        user = f"P24-{offset + i:07d}"
        batch.append(CertificateRequested(
            message_id=str(offset + i), occurred_at=clock.now(), request_id=uuid4(), user_id=user,
            module="EPAK", csr_pem=softtoken.make_csr(softtoken.new_key(), user),
            renews_serial=None))
        if len(batch) == BATCH or i == count - 1:
            ca.process_batch(batch, Tracking("bench", offset + i + 1))  # type: ignore[attr-defined]
            progress.advance(task, len(batch))
            batch = []


def build_store(settings: Settings, events: int) -> None:
    fresh(settings)
    clock = ManualClock(datetime.now(UTC) - timedelta(days=400))
    ca = build_ca(settings, clock, PASSPHRASE)
    ca.hierarchy.initialise()
    (settings.data_dir / "ca-chain.pem").write_text(ca.hierarchy.chain_pem())
    certificates = int(events / EVENTS_PER_CERTIFICATE) + 1
    first = certificates // 2
    with _progress() as progress:
        issue(ca, clock, first, progress, 0)
        clock.advance(timedelta(days=380))
        with console.status("expiry sweep …"):
            expired = ca.expire_due()
        console.print(f"{len(expired):,} certificates expired")
        issue(ca, clock, certificates - first, progress, first)
        good = [e.serial for _, e in read_log(ca, topics=[get_topic(
            Certificate.CertificateIssued)], start=1)][first::10]
        task = progress.add_task(f"revoking {len(good):,}", total=len(good))
        for serial in good:
            ca.revoke(serial, "keyCompromise", "bench")
            progress.advance(task)
        while (ca.recorder.max_notification_id() or 0) < events:  # top up
            issue(ca, clock, 1000, progress, certificates)
            certificates += 1000
    started = time.perf_counter()
    with console.status("live revocation-status view …"):
        catch_up(RevocationStatusProjection(status_view(settings.store_url("ca"),
                                                        settings.data_dir)), ca)
    with console.status("live OCSP store (pre-signing every response) …"):
        ocsp_publisher_of(ca, settings).step()
    console.print(f"live views built in {time.perf_counter() - started:.1f} s")
    key = audit_key(ca.keys, settings.data_dir / "keys" / "audit.pub.pem")  # type: ignore[arg-type]
    checkpoint(ca, key, published=settings.data_dir / "audit" / "heads.jsonl")
    console.print(f"store: {ca.recorder.max_notification_id():,} events")
    ca.close()


def measure(settings: Settings, repeat: int = 3) -> None:
    """Each command ``repeat`` times (the machine's figures vary by ±10 % from run to run);
    the median is the figure."""
    ca = build_ca(settings, SystemClock(), PASSPHRASE)
    portal = build_portal(settings, SystemClock())
    key = audit_key(ca.keys, settings.data_dir / "keys" / "audit.pub.pem")  # type: ignore[arg-type]
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        with console.status("audit verify …"):
            verified = verify(ca, key.public_key(), settings.data_dir / "audit" / "heads.jsonl")
        checked, heads, findings = verified.events, verified.heads, verified.findings
        seconds = time.perf_counter() - started
        rates.append(checked / seconds)
        console.print(f"audit verify: {checked:,} events, {heads} head(s), {len(findings)} "
                      f"finding(s) in {seconds:.1f} s = {checked / seconds:,.0f} events/s")
    console.print(f"audit verify, median of {repeat}: [bold]{median(rates):,.0f} events/s[/]")
    rates = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as scratch, _progress() as progress:
            task = progress.add_task("audit replay", total=total_positions(ca, portal))
            report = replay(live_stores(settings), Path(scratch),
                            tick=lambda n, task=task: progress.advance(task, n))  # type: ignore[misc]
        rates.append(report.events / report.seconds)
        console.print(f"audit replay: {report.events:,} logged events covered, "
                      f"{report.decoded:,} read, decoded and replayed, {report.compared} rows "
                      f"compared, {len(report.differences)} difference(s) in "
                      f"{report.seconds:.1f} s = {report.events / report.seconds:,.0f} logged "
                      f"events/s, {report.decoded / report.seconds:,.0f} replayed events/s")
    console.print(f"audit replay, median of {repeat}: [bold]{median(rates):,.0f} logged "
                  "events/s[/]")
    ca.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="", help="PostgreSQL (else SQLite files)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/partner-ca-audit-bench"))
    parser.add_argument("--reuse", action="store_true", help="measure the existing store")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (median)")
    args = parser.parse_args()
    settings = Settings(data_dir=args.data_dir, database_url=args.database_url)
    if not args.reuse:
        build_store(settings, args.events)
    measure(settings, args.repeat)
    console.print(f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
                  f"{'PostgreSQL' if args.database_url else 'SQLite'}")


if __name__ == "__main__":
    main()
