"""End-to-end issuance over Kafka + PostgreSQL: from "submitted" in the portal to "issued" seen by the portal.

Usage:
  python -m bench.kafka_throughput --requests 20000 --rate 1000 --seconds 20 [--ca-workers 1]

Starts `partner-ca serve --role ca` (× ca-workers) and `--role portal` as separate
processes against the secured broker of deploy/kafka/start.sh (mutual TLS, ACLs, every
record signed and verified) and PostgreSQL of deploy/postgres/start.sh, then
  1. throughput: submits --requests requests at once and measures until the last
     CertificateReady is recorded in the portal store;
  2. latency: submits at --rate requests/s for --seconds and reports p50/p99 of
     (CertificateReady.timestamp − CsrSubmitted.timestamp).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import quantiles

import orjson
import psycopg
from rich.console import Console
from rich.progress import Progress

from adapters.entrypoints.bootstrap import build_portal
from adapters.entrypoints.serve import fewer_collections
from adapters.settings import Settings
from bench.workload import make_csrs, submit_requests
from ca_core.clock import SystemClock

ROOT = Path(__file__).resolve().parents[1]
console = Console()


def services() -> tuple[str, str, str | None]:
    """PostgreSQL and the Kafka broker started by deploy/ (idempotent): the database URL,
    the bootstrap address and the directory of the roles' credentials — the secured broker,
    each role with its own TLS identity and record-signing key (None: a broker from before
    issue 15, for a baseline run of older code)."""
    pg = subprocess.run(["bash", str(ROOT / "deploy/postgres/start.sh")], check=True,
                        capture_output=True, text=True).stdout.strip().splitlines()[-1]
    started = subprocess.run(["bash", str(ROOT / "deploy/kafka/start.sh")], check=True,
                             capture_output=True, text=True)
    kafka = started.stdout.strip().splitlines()[-1]
    credentials = next((line.split(": ", 1)[1] for line in started.stderr.splitlines()
                        if line.startswith("Kafka credentials: ")), None)
    return pg, kafka, credentials


def fresh_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name


READY_TOPIC = "ca_core.request:CertificateRequest.CertificateReady"


def token_env(tmp: Path) -> dict[str, str]:
    """A fresh SoftHSM2 token for the CA keys, and the settings that point at it."""
    (tmp / "tokens").mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\nlog.level = ERROR\n")
    label = f"bench{uuid.uuid4().hex[:6]}"
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin",
                    "123456", "--so-pin", "87654321"], check=True, capture_output=True,
                   env={**os.environ, "SOFTHSM2_CONF": str(conf)})
    return {"SOFTHSM2_CONF": str(conf), "PARTNER_CA_KEY_STORE": "pkcs11",
            "PARTNER_CA_HSM_TOKEN_LABEL": label, "PARTNER_CA_HSM_PIN": "123456"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/<pid>/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> dict[str, float]:
    """CPU seconds so far of the broker's JVM, all PostgreSQL processes and the whole machine
    (busy time from /proc/stat), to account for every certificate's share of the two cores."""
    tick = os.sysconf("SC_CLK_TCK")
    groups = {"broker": 0.0, "postgresql": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        group = "broker" if name == "java" else "postgresql" if name.startswith("postgres") \
            else None
        if group:
            fields = text.rsplit(")", 1)[1].split()
            groups[group] += (int(fields[11]) + int(fields[12])) / tick
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    idle = int(cpu[3]) + int(cpu[4])  # idle + iowait
    groups["machine"] = (sum(int(v) for v in cpu[:8]) - idle) / tick
    return groups


class ReadyCounter:
    """Counts CertificateReady events in the portal store, reading only the rows added since
    the last look, over one connection: polling must not load the machine it measures (a
    count over the whole table five times a second, on a new connection each time, cost
    PostgreSQL a tenth of a core)."""

    def __init__(self, portal_url: str) -> None:
        self.conn = psycopg.connect(portal_url, autocommit=True)
        self.seen, self.count = 0, 0

    def __call__(self) -> int:
        top = self.conn.execute("SELECT coalesce(max(notification_id), 0) FROM portal_events"
                                ).fetchone()
        high = int(top[0]) if top else self.seen
        if high > self.seen:
            found = self.conn.execute(
                "SELECT count(*) FROM portal_events WHERE notification_id > %s "
                "AND notification_id <= %s AND topic = %s",
                (self.seen, high, READY_TOPIC)).fetchone()
            self.count += int(found[0]) if found else 0
            self.seen = high
        return self.count

    def close(self) -> None:
        self.conn.close()


def latencies(portal_url: str, since_position: int) -> tuple[list[float], float, float]:
    """Per-request latency (s), first submit and last ready timestamps, for requests after a position."""
    with psycopg.connect(portal_url) as conn:
        rows = conn.execute(
            "SELECT originator_id, topic, state FROM portal_events WHERE notification_id > %s "
            "AND (topic LIKE %s OR topic LIKE %s)",
            (since_position, "%CsrSubmitted", "%CertificateReady")).fetchall()
    submitted: dict[str, float] = {}
    ready: dict[str, float] = {}
    for originator, topic, state in rows:
        ts = orjson.loads(bytes(state))["timestamp"]
        moment = _epoch(ts)
        (submitted if topic.endswith("CsrSubmitted") else ready)[str(originator)] = moment
    values = [ready[k] - submitted[k] for k in submitted if k in ready]
    return values, min(submitted.values()), max(ready.values())


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def max_position(portal_url: str) -> int:
    with psycopg.connect(portal_url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM portal_events").fetchone()
    return int(row[0]) if row else 0


def wait_ready(ready: ReadyCounter, target: int, label: str, timeout: float = 900) -> None:
    """Until ``target`` requests are ready (the figures come from the events' timestamps, not
    from when this notices)."""
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(label, total=target)
        deadline = time.monotonic() + timeout
        while (done := ready()) < target:
            progress.update(task, completed=done)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {done}/{target} after {timeout} s")
            time.sleep(0.5)


def profile(directory: Path, roles: list[tuple[str, dict[str, str]]],
            procs: list[subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
    """A py-spy sampler per role process (collapsed stacks, native frames left out)."""
    directory.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--format", "raw",
                              "--rate", "250", "--nonblocking",
                              "-o", str(directory / f"{role}-{i}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i, ((role, _), proc) in enumerate(zip(roles, procs, strict=True))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--ca-workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--keys-on-token", action="store_true",
                        help="the CA keys on a fresh SoftHSM2 token (PARTNER_CA_KEY_STORE=pkcs11)")
    parser.add_argument("--split-portal", action="store_true",
                        help="run the portal's relay and inbox as two processes")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="sample each role process with py-spy during the throughput run; "
                             "collapsed stacks in DIR/<role>-<i>.txt")
    args = parser.parse_args()

    pg, kafka, credentials = services()
    tmp = Path(tempfile.mkdtemp(prefix="partner-ca-bench-"))
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "PARTNER_CA_DATA_DIR": str(tmp),
        "PARTNER_CA_KEY_PASSPHRASE": "benchmark passphrase",
        "PARTNER_CA_PORTAL_DATABASE_URL": fresh_database(pg, "bench_portal"),
        "PARTNER_CA_CA_DATABASE_URL": fresh_database(pg, "bench_ca"),
        "PARTNER_CA_KAFKA_BOOTSTRAP": kafka,
        "PARTNER_CA_KAFKA_TOPIC_PREFIX": prefix,
        "PARTNER_CA_KAFKA_CLIENT_PREFIX": prefix.rstrip("."),
        "PARTNER_CA_KAFKA_PARTITIONS": str(args.partitions),
        **({"PARTNER_CA_KAFKA_CREDENTIALS": credentials} if credentials else {}),
        "PARTNER_CA_PORTAL_LISTEN": "",  # the portal API is not part of this benchmark
        "PARTNER_CA_NOTIFIER_IN_PORTAL": "false",
    }
    if args.keys_on_token:
        env.update(token_env(tmp))
    subprocess.run(["partner-ca", "init"], env=env, check=True, capture_output=True)
    if credentials:
        subprocess.run(["partner-ca", "kafka", "grant"], env=env, check=True,
                       capture_output=True)
    portal_url = env["PARTNER_CA_PORTAL_DATABASE_URL"]
    logs = tmp / "logs"
    logs.mkdir()
    portal_roles = ["portal-relay", "portal-inbox"] if args.split_portal else ["portal"]
    # the CA inboxes share the requests partitions through their consumer group
    roles: list[tuple[str, dict[str, str]]] = [(role, {}) for role in portal_roles] + [
        ("ca-relay", {})] + [("ca-inbox", {}) for _ in range(args.ca_workers)]
    procs = [subprocess.Popen(["partner-ca", "serve", "--role", role], env={**env, **extra},
                              stdout=(logs / f"{role}-{i}.log").open("w"),
                              stderr=subprocess.STDOUT)
             for i, (role, extra) in enumerate(roles)]
    settings = Settings(data_dir=tmp, portal_database_url=portal_url,
                        ca_database_url=env["PARTNER_CA_CA_DATABASE_URL"])
    portal = build_portal(settings, SystemClock())
    ready = ReadyCounter(portal_url)
    try:
        console.print(f"making {args.requests + args.rate * args.seconds + 200} CSRs …")
        csrs = make_csrs(args.requests + args.rate * args.seconds + 200)
        fewer_collections()  # submitting stands in for the portal API: serve's GC settings
        # warm-up: processes started, consumers assigned
        submit_requests(portal, csrs[:200])
        wait_ready(ready, 200, "warm-up")

        start_pos = max_position(portal_url)
        cpu_before = [cpu_seconds(proc.pid) for proc in procs]
        machine_before = machine_cpu()
        samplers = profile(args.profile, roles, procs) if args.profile else []
        t0 = time.perf_counter()
        submit_requests(portal, csrs[200:200 + args.requests], first=200, chunk=1000)
        submit_s = time.perf_counter() - t0
        wait_ready(ready, 200 + args.requests, "throughput")
        machine = {name: (seconds - machine_before[name]) * 1e6 / args.requests
                   for name, seconds in machine_cpu().items()}
        for sampler in samplers:
            sampler.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        for sampler in samplers:
            sampler.wait(timeout=60)
        cpu = {f"{role}-{i}": (cpu_seconds(proc.pid) - before) * 1e6 / args.requests
               for i, ((role, _), proc, before) in enumerate(zip(roles, procs, cpu_before,
                                                                  strict=True))}
        values, first, last = latencies(portal_url, start_pos)
        throughput = len(values) / (last - first)
        console.print(f"[bold]throughput[/bold]: {len(values)} certificates in "
                      f"{last - first:.2f} s = {throughput:.0f}/s end to end "
                      f"(submitting took {submit_s:.2f} s); latency p50 "
                      f"{quantiles(values, n=100)[49] * 1000:.0f} ms, p99 "
                      f"{quantiles(values, n=100)[98] * 1000:.0f} ms")
        console.print("CPU per certificate in the role processes: " + ", ".join(
            f"{name} {us:.0f} µs" for name, us in cpu.items())
            + f"; total {sum(cpu.values()):.0f} µs")
        console.print(f"and beside them: broker {machine['broker']:.0f} µs, PostgreSQL "
                      f"{machine['postgresql']:.0f} µs; the whole machine busy "
                      f"{machine['machine']:.0f} µs per certificate (2 cores: "
                      f"{2e6 / machine['machine']:.0f} certificates/s if nothing else ran)")

        start_pos = max_position(portal_url)
        base = 200 + args.requests
        per_tick = max(1, args.rate // 20)
        sent = 0
        t0 = time.perf_counter()
        while sent < args.rate * args.seconds:
            tick = csrs[base + sent:base + min(sent + per_tick, args.rate * args.seconds)]
            submit_requests(portal, tick, first=base + sent)
            sent += len(tick)  # the last tick may be shorter (a rate not a multiple of 20)
            delay = t0 + sent / args.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        offered = sent / (time.perf_counter() - t0)
        wait_ready(ready, base + sent, "latency")
        values, _, _ = latencies(portal_url, start_pos)
        q = quantiles(values, n=100)
        console.print(f"[bold]latency at {offered:.0f}/s offered[/bold] ({len(values)} requests): "
                      f"p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
                      f"max {max(values) * 1000:.0f} ms")
    finally:
        ready.close()
        portal.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    sys.exit(0)


if __name__ == "__main__":
    main()
