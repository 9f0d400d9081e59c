"""Full-CRL generation: our builder against `openssl ca -gencrl` on the same revoked entries.

Usage: python -m bench.crl_gen [--entries 100000 1000000] [--dir /tmp/partner-ca-crl-bench]

For each size N: N revoked entries (random 126-bit serials, revocation times over
the past three years, the RFC 5280 reasons in turn) are
  1. signed by ``ca_core.crl.build_crl`` in a fresh process (time of the build; peak
     RSS of that process, entries included), and also read from a SQLite
     revocation-status view holding the same N rows and signed (the path
     ``partner-ca crl`` and ``serve --role crl`` take);
  2. written as an OpenSSL CA database (index.txt, one ``R`` line per entry) and
     signed by ``openssl ca -gencrl`` with the same P-256 key (wall time and peak
     RSS from /usr/bin/time).
Prints time, peak memory and CRL size for both.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eventsourcing.persistence import Tracking
from rich.console import Console
from rich.table import Table

from ca_core.certificate import REVOCATION_REASONS
from ca_core.crl import RevokedEntry, build_crl
from ca_core.policy import IssuancePolicy
from ca_core.x509profile import build_issuing, build_root, ca_name

console = Console()
NOW = datetime.now(UTC).replace(microsecond=0)


def make_entries(n: int) -> list[RevokedEntry]:
    rng = random.Random(n)
    # openssl ca's index has no privilegeWithdrawn: the common reasons only, the same for both
    reasons = [r for r in REVOCATION_REASONS if r != "privilegeWithdrawn"]
    return [RevokedEntry(format(rng.getrandbits(126) | 1 << 125, "X"),
                         NOW - timedelta(seconds=rng.randrange(3 * 365 * 86400)),
                         reasons[i % len(reasons)]) for i in range(n)]


def make_issuer(directory: Path) -> None:
    root_key, key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP256R1())
    root = build_root(root_key, ca_name("Bench Root", "Partner Portal", "CZ"), NOW)
    issuing = build_issuing(root_key, root, key, ca_name("Bench Issuing", "Partner Portal", "CZ"),
                            NOW, IssuancePolicy())
    (directory / "issuing.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (directory / "issuing.pem").write_bytes(issuing.public_bytes(serialization.Encoding.PEM))


def ours(directory: Path, n: int, via_view: bool) -> None:
    """Run in a child process: prints seconds, peak RSS (MiB), CRL bytes."""
    key = serialization.load_pem_private_key((directory / "issuing.key").read_bytes(), None)
    issuer = x509.load_pem_x509_certificate((directory / "issuing.pem").read_bytes())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    if via_view:
        from adapters.storage.persistence import status_view

        view = status_view("", directory / f"view-{n}")
        started = time.perf_counter()
        entries = view.revoked_entries()
    else:
        entries = make_entries(n)
        started = time.perf_counter()
    der = build_crl(key, issuer, entries, 1, NOW, timedelta(days=1))
    elapsed = time.perf_counter() - started
    (directory / f"ours-{n}.crl").write_bytes(der)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{elapsed:.3f} {peak:.0f} {len(der)}")


def fill_view(directory: Path, n: int) -> None:
    """A SQLite revocation-status view with n revoked rows (as the projection writes them)."""
    from adapters.storage.persistence import status_view

    view = status_view("", directory / f"view-{n}")
    if view.max_tracking_id("bench"):
        return
    rows = [(e.serial, "BENCH", "EPAK", "00000000-0000-0000-0000-000000000000",
             (e.revoked_at - timedelta(days=1)).isoformat(),
             (e.revoked_at + timedelta(days=365)).isoformat(), "revoked", e.reason,
             e.revoked_at.isoformat(), "operator:bench", i + 1)
            for i, e in enumerate(make_entries(n))]
    with view.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
        c.executemany(f"INSERT INTO revocation_status VALUES ({','.join('?' * 11)})", rows)
    view.insert_tracking(Tracking("bench", 1))


def openssl_files(directory: Path, n: int) -> Path:
    work = directory / f"openssl-{n}"
    work.mkdir(exist_ok=True)
    lines = []
    for e in make_entries(n):
        revoked = e.revoked_at.strftime("%y%m%d%H%M%SZ")
        expiry = (e.revoked_at + timedelta(days=365)).strftime("%y%m%d%H%M%SZ")
        lines.append(f"R\t{expiry}\t{revoked},{e.reason}\t{e.serial}\tunknown\t/CN=BENCH")
    (work / "index.txt").write_text("\n".join(lines) + "\n")
    (work / "index.txt.attr").write_text("unique_subject = no\n")
    (work / "crlnumber").write_text("01\n")
    (work / "openssl.cnf").write_text(f"""[ca]
default_ca = bench
[bench]
database = {work}/index.txt
crlnumber = {work}/crlnumber
certificate = {directory}/issuing.pem
private_key = {directory}/issuing.key
default_md = sha256
default_crl_days = 1
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
""")
    return work


def openssl(work: Path) -> tuple[float, float, int]:
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "openssl", "ca", "-gencrl", "-config",
                           str(work / "openssl.cnf"), "-out", str(work / "crl.pem")],
                          capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    peak = int(done.stderr.strip().splitlines()[-1]) / 1024
    der = subprocess.run(["openssl", "crl", "-in", str(work / "crl.pem"), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return elapsed, peak, len(der)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "partner-ca-crl-bench")
    args = parser.parse_args()
    directory: Path = args.dir
    directory.mkdir(exist_ok=True)
    make_issuer(directory)
    table = Table(title=f"Full CRL generation, EC P-256 issuer, {datetime.now(UTC):%Y-%m-%d}")
    for column in ("entries", "builder", "seconds", "peak RSS MiB", "CRL bytes"):
        table.add_column(column)
    for n in args.entries:
        with console.status(f"{n} entries: preparing …"):
            fill_view(directory, n)
            work = openssl_files(directory, n)
        for label, via_view in (("partner-ca build_crl", False),
                                ("partner-ca from status view", True)):
            with console.status(f"{n} entries: {label} …"):
                done = subprocess.run([sys.executable, "-m", "bench.crl_gen", "--child",
                                       str(directory), str(n), str(int(via_view))],
                                      capture_output=True, text=True, check=True)
            seconds, peak, size = done.stdout.split()
            table.add_row(str(n), label, seconds, peak, size)
        with console.status(f"{n} entries: openssl ca -gencrl …"):
            elapsed, peak_mib, size_bytes = openssl(work)
        table.add_row(str(n), "openssl ca -gencrl", f"{elapsed:.3f}", f"{peak_mib:.0f}",
                      str(size_bytes))
    console.print(table)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        ours(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1")
    else:
        main()
