"""Revocation propagation in the production wiring: from the user's revocation accepted by the
portal API to every OCSP worker answering "revoked" and the served CRL listing it.

Portal (API, relay, inbox) and CA (inbox, relay, OCSP/CRL publishing) as `serve` processes
over the secured Kafka broker, PostgreSQL, `serve --role ocsp` with two workers, `serve
--role crl`. Each revocation goes through the API (certificate login, POST
/v1/revocations); then fresh connections ask the OCSP port (SO_REUSEPORT spreads them over
the workers) until ``--agree`` answers in a row say revoked, and the CRL is fetched until it
lists the serial. ``python -m bench.revocation_propagation --certificates 30``.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from rich.console import Console
from rich.progress import Progress

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import build_portal
from adapters.settings import Settings
from bench.kafka_throughput import fresh_database, services
from ca_core.clock import SystemClock

ROOT = Path(__file__).resolve().parents[1]
console = Console()
PASSWORD = "revocation pw 1"


def _socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _until(check: object, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certificates", type=int, default=30)
    parser.add_argument("--agree", type=int, default=6,
                        help="fresh OCSP connections in a row that must say revoked")
    parser.add_argument("--poll", type=float, default=0.1,
                        help="PARTNER_CA_RELYING_POLL_SECONDS of the roles")
    args = parser.parse_args()

    pg, kafka, credentials = services()
    if credentials is None:
        raise SystemExit("the broker is not the secured one of deploy/kafka/start.sh")
    tmp = Path(tempfile.mkdtemp(prefix="partner-ca-revocation-"))
    prefix = f"rev{uuid.uuid4().hex[:8]}."
    api, ocsp_sock, crl_sock = _socket(), _socket(), _socket()
    urls = {name: f"http://127.0.0.1:{s.getsockname()[1]}"
            for name, s in (("api", api), ("ocsp", ocsp_sock), ("crl", crl_sock))}
    env = {
        **os.environ,
        "PARTNER_CA_DATA_DIR": str(tmp), "PARTNER_CA_KEY_PASSPHRASE": "benchmark passphrase",
        "PARTNER_CA_PORTAL_DATABASE_URL": fresh_database(pg, "bench_rev_portal"),
        "PARTNER_CA_CA_DATABASE_URL": fresh_database(pg, "bench_rev_ca"),
        "PARTNER_CA_KAFKA_BOOTSTRAP": kafka, "PARTNER_CA_KAFKA_TOPIC_PREFIX": prefix,
        "PARTNER_CA_KAFKA_CLIENT_PREFIX": prefix.rstrip("."),
        "PARTNER_CA_KAFKA_CREDENTIALS": credentials,
        "PARTNER_CA_PORTAL_LISTEN": f"fd:{api.fileno()}",
        "PARTNER_CA_OCSP_LISTEN": f"fd:{ocsp_sock.fileno()}", "PARTNER_CA_OCSP_WORKERS": "2",
        "PARTNER_CA_CRL_LISTEN": f"fd:{crl_sock.fileno()}",
        "PARTNER_CA_RELYING_POLL_SECONDS": str(args.poll), "PARTNER_CA_CRL_DELAY_SECONDS": "0",
        "PARTNER_CA_NOTIFIER_IN_PORTAL": "false", "PARTNER_CA_OTP_REFUSAL_SECONDS": "0",
        "PARTNER_CA_PORTAL_TRUSTED_PROXIES": '["127.0.0.1"]',
    }
    env.pop("PARTNER_CA_DATABASE_URL", None)
    subprocess.run(["partner-ca", "init"], env=env, check=True, capture_output=True)
    subprocess.run(["partner-ca", "kafka", "grant"], env=env, check=True, capture_output=True)
    logs = tmp / "logs"
    logs.mkdir()
    fds = (api.fileno(), ocsp_sock.fileno(), crl_sock.fileno())
    procs = [subprocess.Popen(["partner-ca", "serve", "--role", role], env=env,
                              stdout=(logs / f"{role}.log").open("w"), stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, pass_fds=fds)
             for role in ("ca", "portal", "ocsp", "crl")]
    settings = Settings(data_dir=tmp, portal_database_url=env["PARTNER_CA_PORTAL_DATABASE_URL"],
                        ca_database_url=env["PARTNER_CA_CA_DATABASE_URL"])
    portal = build_portal(settings, SystemClock())
    client = httpx.Client(base_url=urls["api"], timeout=30)
    chain = (tmp / "ca-chain.pem").read_text()
    issuer = x509.load_pem_x509_certificate(chain.encode())
    delays: list[float] = []
    try:
        _until(lambda: client.get("/v1/challenge").status_code == 200, "the portal API")
        _until(lambda: httpx.post(f"{urls['ocsp']}/ocsp", content=b"").status_code == 200,
               "the OCSP responder")
        users = []
        for n in range(args.certificates):  # certificates issued over Kafka first
            user = f"P24-{700000 + n}"
            portal.register_partner(user, f"{user.lower()}@example.com", ["EPAK"])
            _, otp = portal.issue_otp(user, "EPAK", issued_by="bench")
            key = softtoken.new_key()
            request_id = portal.submit_request(portal.login_with_otp(user, otp),
                                               softtoken.make_csr(key, user), PASSWORD, PASSWORD)
            users.append((user, key, request_id))
        _until(lambda: all(portal.request(r).state == "ready" for _, _, r in users),
               "issuance over Kafka", timeout=300)
        certificates = [(portal.pickup(r, u).certificate_pem, k) for u, k, r in users]
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("revocations", total=len(certificates))
            for n, (pem, key) in enumerate(certificates):
                cert = x509.load_pem_x509_certificate(pem.encode())
                # the OCSP answer is "good" before (pre-signed when it was issued)
                _until(lambda c=cert: _ocsp(urls["ocsp"], c, issuer) == "good",  # type: ignore[misc]
                       "a good answer")
                token = _login(client, pem, key, f"10.0.{n // 250}.{n % 250 + 1}")
                reply = client.post("/v1/revocations", headers={
                    "Authorization": f"Bearer {token}"},
                    json={"revocation_password": PASSWORD, "reason": "keyCompromise"})
                accepted = time.perf_counter()
                assert reply.status_code == 202, reply.text
                ocsp_at = crl_at = None
                in_a_row = 0
                while ocsp_at is None or crl_at is None:
                    if ocsp_at is None:
                        in_a_row = in_a_row + 1 if _ocsp(urls["ocsp"], cert, issuer) == \
                            "revoked" else 0
                        if in_a_row >= args.agree:
                            ocsp_at = time.perf_counter()
                    if crl_at is None and _listed(urls["crl"], cert.serial_number):
                        crl_at = time.perf_counter()
                    if time.perf_counter() - accepted > 60:
                        raise SystemExit("a revocation did not propagate within 60 s")
                    time.sleep(0.01)
                delays.append(max(ocsp_at, crl_at) - accepted)
                progress.advance(task)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        client.close()
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    console.print(f"revocation propagation over {len(delays)} revocations (portal API "
                  f"accepted → {args.agree} fresh OCSP connections in a row revoked and the "
                  f"CRL listing it): p50 {statistics.median(delays) * 1000:.0f} ms, p99 "
                  f"{p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms "
                  f"(roles poll every {args.poll} s)")


def _login(client: httpx.Client, pem: str, key: softtoken.UserKey, address: str) -> str:
    """A certificate session (the portal's status view may need a moment to know it); each
    user from an address of its own (the API trusts the benchmark as its proxy)."""
    for _ in range(19):
        challenge = client.get("/v1/challenge").json()["challenge"]
        reply = client.post("/v1/sessions/certificate", headers={"X-Forwarded-For": address},
                            json={
            "certificate_pem": pem, "challenge": challenge,
            "signature_b64": base64.b64encode(softtoken.sign_challenge(key, challenge)).decode()})
        if reply.status_code == 201:
            return str(reply.json()["token"])
        time.sleep(0.5)
    raise SystemExit(f"certificate login refused: {reply.text}")


def _ocsp(url: str, cert: x509.Certificate, issuer: x509.Certificate) -> str:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    body = request.public_bytes(serialization.Encoding.DER)
    answer = httpx.post(f"{url}/ocsp", content=body,  # a new connection each time
                        headers={"Content-Type": "application/ocsp-request"}, timeout=10)
    parsed = ocsp.load_der_ocsp_response(answer.content)
    if parsed.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return parsed.response_status.name.lower()
    return parsed.certificate_status.name.lower()


def _listed(url: str, serial: int) -> bool:
    reply = httpx.get(f"{url}/crl/issuing.crl", timeout=10)
    if reply.status_code != 200:
        return False
    crl = x509.load_der_x509_crl(reply.content)
    return crl.get_revoked_certificate_by_serial_number(serial) is not None


if __name__ == "__main__":
    main()
