"""OCSP responder throughput and latency, side by side with OpenSSL's own responder.

Usage:
  python -m bench.ocsp_load [--certificates 100000] [--distinct 20000] [--seconds 10]
                            [--connections 64] [--workers 2] [--data-dir DIR]

1. Issues ``--certificates`` certificates in-process (SQLite, batches of 500) into
   ``--data-dir`` (kept, so a second run reuses them), revokes every tenth, and
   lets the OCSP maintainer pre-sign their responses.
2. Starts ``partner-ca serve --role ocsp`` (``--workers`` HTTP processes) and
   ``openssl ocsp -index … -port …`` on an index.txt of the same certificates,
   signing with the same delegated signer (``-multi`` = the same worker count).
3. Drives both with the same load generator, ``wrk`` (keep-alive, one thread,
   ``--connections`` connections), on the same ``--distinct`` requests (GET
   paths per RFC 5019, and POST bodies), for ``--seconds`` each, and prints
   requests/s and p50/p99 latency. wrk comes from Debian (``apt-get install wrk``).
4. Then the same with ``h2load`` (Debian ``nghttp2-client``; ``--h1``, a fixed number of
   requests per connection count, per-request times from its ``--log-file``) for our
   responder, OpenSSL's responder in its default single-process mode and with ``-multi``,
   and — as the ceiling of this machine — nginx returning one pre-signed response as a
   static file. wrk cannot drive OpenSSL's single-process responder: wrk opens a probe
   connection that sends nothing and closes, and OpenSSL 3.0's responder then spins on
   that closed connection for good (100 % CPU, no further accept). h2load opens none.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from eventsourcing.persistence import Tracking
from rich.console import Console
from rich.progress import track
from rich.table import Table

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import build_ca
from adapters.entrypoints.ca_wiring import ocsp_publisher_of
from adapters.settings import Settings
from adapters.storage.persistence import status_view
from ca_core.clock import SystemClock
from ca_core.messages import CertificateRequested
from projections.feed import catch_up
from projections.status import RevocationStatusProjection

console = Console()
PASSPHRASE = "benchmark passphrase"

POST_LUA = """
local requests = {}
local n = 0
init = function(args)
  local f = io.open(args[1], "rb")
  local data = f:read("*all")
  f:close()
  local i = 1
  while i < #data do
    local len = string.byte(data, i) * 256 + string.byte(data, i + 1)
    n = n + 1
    local headers = {["Content-Type"] = "application/ocsp-request"}
    if args[3] == "close" then headers["Connection"] = "close" end
    requests[n] = wrk.format("POST", args[2], headers, string.sub(data, i + 2, i + 1 + len))
    i = i + 2 + len
  end
  counter = math.random(n)
end
request = function()
  counter = counter % n + 1
  return requests[counter]
end
"""

GET_LUA = """
local requests = {}
local n = 0
init = function(args)
  local headers = {}
  if args[2] == "close" then headers["Connection"] = "close" end
  for line in io.lines(args[1]) do
    n = n + 1
    requests[n] = wrk.format("GET", line, headers)
  end
  counter = math.random(n)
end
request = function()
  counter = counter % n + 1
  return requests[counter]
end
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def issue(settings: Settings, count: int) -> None:
    ca = build_ca(settings, SystemClock(), PASSPHRASE)
    ca.hierarchy.initialise()
    (settings.data_dir / "ca-chain.pem").write_text(ca.hierarchy.chain_pem())
    now = SystemClock().now()
    batch: list[CertificateRequested] = []
    done = 0
    for i in track(range(count), description=f"issuing {count} certificates"):
        batch.append(CertificateRequested(
            message_id=str(i), occurred_at=now, request_id=uuid4(), user_id=f"P24-{i:06d}",
            module="EPAK", csr_pem=softtoken.make_csr(softtoken.new_key(), f"P24-{i:06d}"),
            renews_serial=None))
        if len(batch) == 500 or i == count - 1:
            done += len(batch)
            ca.process_batch(batch, Tracking("bench", done))
            batch = []
    serials = [c.serial for _, c in _certificates(ca)]
    for serial in track(serials[::10], description="revoking every tenth"):
        ca.revoke(serial, "keyCompromise", "bench")
    ca.close()


def _certificates(ca: object) -> list[tuple[int, object]]:
    from eventsourcing.utils import get_topic

    from ca_core.certificate import Certificate
    from ca_core.eventmodel import read_log

    return list(read_log(ca, topics=[get_topic(Certificate.CertificateIssued)]))  # type: ignore[arg-type]


def presign(settings: Settings) -> None:
    ca = build_ca(settings, SystemClock(), PASSPHRASE)
    started = time.perf_counter()
    with console.status("pre-signing OCSP responses (SHA-1 and SHA-256 CertIDs) …"):
        count = ocsp_publisher_of(ca, settings).step()
    console.print(f"pre-signed {count} certificates' responses in "
                  f"{time.perf_counter() - started:.1f} s")
    ca.close()


def openssl_files(settings: Settings, tmp: Path) -> None:
    """index.txt of the same certificates, and the delegated signer as PEM for openssl."""
    ca = build_ca(settings, SystemClock(), PASSPHRASE)
    signer = ca.ocsp.current()
    (tmp / "signer.pem").write_bytes(signer.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp / "signer.key").write_bytes(signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp / "issuing.pem").write_text(ca.authority().issuing_certificate_pem)
    view = RevocationStatusProjection(status_view("", settings.data_dir))
    catch_up(view, ca)
    lines = []
    for row in view.view.rows():
        expiry = row.not_after.strftime("%y%m%d%H%M%SZ")
        revoked = (row.changed_at or row.not_before).strftime("%y%m%d%H%M%SZ") + ",keyCompromise"
        subject = f"/CN={row.user_id}"
        lines.append("\t".join(["R" if row.status == "revoked" else "V", expiry,
                                revoked if row.status == "revoked" else "", row.serial,
                                "unknown", subject]))
    (tmp / "index.txt").write_text("\n".join(lines) + "\n")
    ca.close()


def requests(settings: Settings, tmp: Path, distinct: int) -> None:
    """The same ``distinct`` requests for both servers: GET paths and POST bodies."""
    ca = build_ca(settings, SystemClock(), PASSPHRASE)
    issuer = x509.load_pem_x509_certificate(ca.authority().issuing_certificate_pem.encode())
    rows = _certificates(ca)
    chosen = random.Random(7).sample(rows, min(distinct, len(rows)))
    paths, bodies = [], bytearray()
    for _, issued in chosen:
        cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())  # type: ignore[attr-defined]
        der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build() \
            .public_bytes(serialization.Encoding.DER)
        paths.append("/ocsp/" + quote(base64.b64encode(der).decode(), safe=""))
        bodies += len(der).to_bytes(2, "big") + der
    (tmp / "paths.txt").write_text("\n".join(paths) + "\n")
    (tmp / "bodies.bin").write_bytes(bytes(bodies))
    (tmp / "get.lua").write_text(GET_LUA)
    (tmp / "post.lua").write_text(POST_LUA)
    ca.close()


def wrk(url: str, script: Path, args: list[str], seconds: int, connections: int) -> dict[str, str]:
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                           "-s", str(script), url, "--", *args],
                          capture_output=True, text=True, check=True)
    out = done.stdout
    found = {
        "rps": re.search(r"Requests/sec:\s+([\d.]+)", out),
        "p50": re.search(r"50%\s+([\d.]+\w+)", out),
        "p99": re.search(r"99%\s+([\d.]+\w+)", out),
        "errors": re.search(r"Non-2xx or 3xx responses: (\d+)", out),
        "socket": re.search(r"Socket errors: (.*)", out),
    }
    return {k: (m.group(1) if m else "-") for k, m in found.items()}


def h2load(uris: Path, connections: int, total: int, body: Path | None = None
           ) -> dict[str, str]:
    """``total`` requests over ``connections`` HTTP/1.1 connections, one thread; a count,
    not a duration, so that no connection is cut mid-request at the end (which would
    wedge OpenSSL's single-process responder)."""
    log = uris.with_suffix(".h2log")
    log.unlink(missing_ok=True)
    command = ["h2load", "--h1", "-t1", f"-c{connections}", f"-n{total}", "-i", str(uris),
               f"--log-file={log}"]
    if body is not None:
        command += ["-d", str(body), "-H", "Content-Type: application/ocsp-request"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    rps = re.search(r"finished in [^,]+, ([\d.]+) req/s", done.stdout)
    statuses = re.search(r"status codes: (\d+) 2xx", done.stdout)
    times = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    if not times:
        return {"rps": "-", "p50": "-", "p99": "-", "ok": "0"}
    return {"rps": rps.group(1) if rps else "-",
            "p50": f"{times[len(times) // 2] / 1000:.2f}ms",
            "p99": f"{times[int(len(times) * 0.99)] / 1000:.2f}ms",
            "ok": statuses.group(1) if statuses else "-"}


def nginx_ceiling(tmp: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """nginx (Debian) serving one pre-signed OCSP response as a static file: what any
    HTTP server on this machine can do at best with the same load generator. Its files are
    outside the benchmark's data directory: that one is 0700, and nginx's workers (user
    nobody) could not read it — every answer was a 403, so the "ceiling" measured error pages
    (issue 27)."""
    root = Path(tempfile.mkdtemp(prefix="partner-ca-bench-nginx-"))
    (root / "html").mkdir(parents=True, exist_ok=True)
    (root / "html" / "r").write_bytes(os.urandom(900))  # the size of one of our responses
    for path, mode in ((root, 0o755), (root / "html", 0o755), (root / "html" / "r", 0o644)):
        path.chmod(mode)
    (root / "nginx.conf").write_text(
        f"worker_processes {workers};\npid {root}/nginx.pid;\nerror_log {root}/error.log;\n"
        "daemon off;\nevents { worker_connections 4096; }\n"
        f"http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {root}/html;"
        " keepalive_requests 10000000; location / { try_files /r =404; } } }\n")
    return subprocess.Popen(["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop(server: subprocess.Popen[bytes], group: bool) -> None:
    def kill(sig: int) -> None:
        if group:
            os.killpg(server.pid, sig)
        else:
            server.send_signal(sig)

    kill(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill(signal.SIGKILL)


def wait_http(url: str, timeout: float = 60) -> None:
    """Until ``url`` answers. (A silent probe connection would block an openssl responder
    process: it waits for the request without a time limit.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2, headers={"Connection": "close"})
        except httpx.TransportError:
            time.sleep(0.2)
        else:
            return
    raise TimeoutError(f"nothing answers at {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certificates", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=12,
                        help="seconds of load before measuring (fills our workers' caches)")
    parser.add_argument("--skip-openssl", action="store_true", help="only our responder")
    parser.add_argument("--skip-h2load", action="store_true", help="only the wrk runs")
    parser.add_argument("--h2load-requests", type=int, default=400_000,
                        help="requests per h2load run against our responder and nginx "
                             "(OpenSSL's responders get a quarter)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/partner-ca-ocsp-bench"))
    args = parser.parse_args()

    data = args.data_dir
    settings = Settings(data_dir=data, ocsp_workers=args.workers)
    if not (data / "ca.sqlite").exists():
        issue(settings, args.certificates)
        presign(settings)
    tmp = data / "load"
    tmp.mkdir(exist_ok=True)
    openssl_files(settings, tmp)
    requests(settings, tmp, args.distinct)

    ours = free_port()
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(data), "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE,
           "PARTNER_CA_OCSP_LISTEN": f"127.0.0.1:{ours}",
           "PARTNER_CA_OCSP_WORKERS": str(args.workers)}
    openssl = ["openssl", "ocsp", "-index", str(tmp / "index.txt"), "-rsigner",
               str(tmp / "signer.pem"), "-rkey", str(tmp / "signer.key"), "-CA",
               str(tmp / "issuing.pem"), "-nmin", "60", "-timeout", "1"]
    (tmp / "root-paths.txt").write_text((tmp / "paths.txt").read_text().replace("/ocsp/", "/"))
    # OpenSSL's responder answers HTTP/1.0 and closes every connection, so wrk is told to
    # expect that (Connection: close). Its single-process mode (no -multi, or -multi 1)
    # hangs on wrk's first connection here (OpenSSL 3.0.19), so it runs with -multi.
    runs: list[tuple[str, list[str], dict[str, str] | None, Path, str, str]] = [
        ("partner-ca", ["partner-ca", "serve", "--role", "ocsp"], env, tmp / "paths.txt", "/ocsp",
         "keep-alive"),
        (f"openssl ocsp -multi {args.workers}", [*openssl, "-multi", str(args.workers)], None,
         tmp / "root-paths.txt", "/", "close"),
    ]
    if args.skip_openssl:
        runs = runs[:1]
    table = Table(title=f"OCSP, {args.distinct} distinct requests over {args.certificates} "
                        f"certificates, wrk 1 thread × {args.connections} connections, "
                        f"{args.seconds} s each")
    for column in ("server", "method", "connections", "requests/s", "p50", "p99", "non-2xx",
                   "socket errors"):
        table.add_column(column)
    failed: list[str] = []
    for name, command, run_env, paths, post_path, mode in runs:
        for method, script, script_args in (
                ("GET", tmp / "get.lua", [str(paths), mode]),
                ("POST", tmp / "post.lua", [str(tmp / "bodies.bin"), post_path, mode])):
            # a fresh server per run: when wrk stops it cuts connections mid-request, and an
            # openssl responder process then waits on such a connection for good
            port = free_port() if run_env is None else ours
            server = subprocess.Popen(
                [*command, "-port", str(port)] if run_env is None else command, env=run_env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                base = f"http://127.0.0.1:{port}"
                wait_http(base + paths.read_text().splitlines()[0])
                if run_env is not None:  # fill our workers' caches first
                    wrk(base, script, script_args, args.warmup, args.connections)
                result = wrk(base, script, script_args, args.seconds, args.connections)
            finally:
                stop(server, group=run_env is None)
            if result["errors"] not in ("-", "0"):
                failed.append(f"{name} {method}: {result['errors']} non-2xx answers")
            table.add_row(name, method, mode, result["rps"], result["p50"], result["p99"],
                          result["errors"], result["socket"])
            console.print(f"{name} {method}: {result}")
    console.print(table)
    if not args.skip_h2load:
        failed += h2load_runs(args, env, ours, tmp, openssl)
    console.print(f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    for row in failed:
        console.print(f"[red]not every answer was 2xx — {row}[/red]")
    if failed:
        raise SystemExit(1)


def h2load_runs(args: argparse.Namespace, env: dict[str, str], ours: int, tmp: Path,
                openssl: list[str]) -> list[str]:
    """Everything with h2load, including OpenSSL's single-process responder; returns the rows
    where not every answer was 2xx."""
    failed_rows: list[str] = []
    table = Table(title=f"h2load --h1, 1 thread × {args.connections} connections")
    for column in ("server", "method", "requests", "requests/s", "p50", "p99", "2xx"):
        table.add_column(column)
    paths = (tmp / "paths.txt").read_text().splitlines()
    first_body = tmp / "first-body.der"
    blob = (tmp / "bodies.bin").read_bytes()
    first_body.write_bytes(blob[2:2 + int.from_bytes(blob[:2], "big")])
    servers: list[tuple[str, int]] = [("partner-ca", args.h2load_requests),
                                      ("openssl ocsp (single process)", args.h2load_requests // 4),
                                      (f"openssl ocsp -multi {args.workers}",
                                       args.h2load_requests // 4),
                                      ("nginx static file (ceiling)", args.h2load_requests)]
    for name, total in servers:
        for method in ("GET", "POST"):
            if name.startswith("nginx") and method == "POST":
                continue
            port = ours if name == "partner-ca" else free_port()
            # GET paths and the POST path each server answers at
            if name == "partner-ca":
                server = subprocess.Popen(["partner-ca", "serve", "--role", "ocsp"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                get_paths, post_path = paths, "/ocsp"
            elif name.startswith("nginx"):
                server = nginx_ceiling(tmp, port, args.workers)
                get_paths, post_path = ["/r"], "/r"
            else:
                multi = ["-multi", str(args.workers)] if "multi" in name else []
                server = subprocess.Popen([*openssl, *multi, "-port", str(port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=not multi)
                get_paths, post_path = [p.removeprefix("/ocsp") for p in paths], "/"
            base = f"http://127.0.0.1:{port}"
            uris = tmp / "uris.txt"
            uris.write_text("".join(f"{base}{path}\n" for path in
                                    (get_paths if method == "GET" else [post_path])))
            try:
                wait_http(base + get_paths[0])
                if name == "partner-ca":  # the same warm cache as in the wrk runs
                    h2load(uris, args.connections, total // 2,
                           first_body if method == "POST" else None)
                result = h2load(uris, args.connections, total,
                                first_body if method == "POST" else None)
            finally:
                stop(server, group=name != "partner-ca")
            complete = result["ok"] == str(total)
            if not complete:  # a row of error pages measures nothing
                failed_rows.append(f"{name} {method}: {result['ok']} of {total} answered 2xx")
            table.add_row(name, method, str(total), result["rps"], result["p50"], result["p99"],
                          result["ok"] if complete else f"[red]{result['ok']}[/red]")
            console.print(f"{name} {method} (h2load): {result}")
    console.print(table)
    return failed_rows


if __name__ == "__main__":
    main()
