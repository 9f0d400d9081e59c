"""Shared test helpers: a system under test and the user's side of the story."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from adapters.client import softtoken
from adapters.entrypoints.bootstrap import PartnerCa, build
from adapters.settings import Settings
from ca_core.clock import ManualClock
from ca_core.portal import CertificateSession, PickedUpCertificate

#: the secured test broker's credentials (deploy/kafka/start.sh writes them; deploy/test.sh
#: exports the variable)
KAFKA_CREDENTIALS = Path(os.environ.get(
    "PARTNER_CA_TEST_KAFKA_CREDENTIALS",
    f"/tmp/partner-ca-kafka-{os.environ.get('PARTNER_CA_KAFKA_PORT', '59092')}/credentials"))
PASSPHRASE = "test passphrase for keys"
START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
USER, MODULE, PASSWORD = "P24-000123", "EPAK", "revocation secret 1"


def make_system(data_dir: Path, database_url: str = "", initialise: bool = True,
                kafka_bootstrap: str = "", kafka_prefix: str = "",
                start: datetime = START, **settings: Any) -> PartnerCa:
    """The system under test; with ``kafka_bootstrap`` the two applications talk over Kafka
    (the secured broker: the prefix's ACLs are granted first, each role uses its own
    credentials)."""
    if kafka_bootstrap:
        grant_kafka(kafka_bootstrap, kafka_prefix or "partner-ca.")
        settings.setdefault("kafka_credentials", KAFKA_CREDENTIALS)
    settings = Settings(data_dir=data_dir, database_url=database_url,
                        kafka_bootstrap=kafka_bootstrap,
                        kafka_topic_prefix=kafka_prefix or "partner-ca.",
                        kafka_client_prefix=kafka_prefix or "partner-ca", kafka_partitions=3,
                        **settings)
    system = build(settings,
                   clock=ManualClock(start, step=timedelta(milliseconds=1)),
                   passphrase=PASSPHRASE)
    if initialise:
        system.ca.hierarchy.initialise()
    return system


def grant_kafka(bootstrap: str, prefix: str) -> list[str]:
    """The ACLs of the portal, CA and reader principals on ``prefix``'s topics (as admin)."""
    from adapters.transport.kafka.acls import default_grants, grant
    from adapters.transport.kafka.security import role_credentials

    admin = role_credentials(KAFKA_CREDENTIALS, "admin")
    return grant(bootstrap, admin.client_options, prefix, default_grants())


def kafka_env(bootstrap: str, prefix: str) -> dict[str, str]:
    """Environment for processes on the secured broker, the prefix's ACLs granted."""
    grant_kafka(bootstrap, prefix)
    return {"PARTNER_CA_KAFKA_BOOTSTRAP": bootstrap, "PARTNER_CA_KAFKA_TOPIC_PREFIX": prefix,
            "PARTNER_CA_KAFKA_CREDENTIALS": str(KAFKA_CREDENTIALS)}


@dataclass
class Enrolled:
    """A user who went through chapter 4: key, request and picked-up certificate."""

    key: softtoken.UserKey
    request_id: UUID
    picked: PickedUpCertificate


def register(system: PartnerCa, user: str = USER, modules: tuple[str, ...] = (MODULE,)) -> None:
    system.portal.register_partner(user, f"{user.lower()}@example.com", list(modules))


def enroll(system: PartnerCa, user: str = USER, module: str = MODULE,
           key: softtoken.UserKey | None = None, password: str = PASSWORD) -> Enrolled:
    """OTP → login → CSR → issuance → pickup."""
    _, otp = system.portal.issue_otp(user, module, issued_by=f"admin-{module.lower()}")
    session = system.portal.login_with_otp(user, otp)
    key = key or softtoken.new_key()
    request_id = system.portal.submit_request(session, softtoken.make_csr(key, user),
                                              password, password)
    system.pump()
    return Enrolled(key, request_id, system.portal.pickup(request_id, user))


def cert_login(system: PartnerCa, certificate_pem: str,
               key: softtoken.UserKey) -> CertificateSession:
    challenge = system.portal.certificate_login.new_challenge()
    return system.portal.certificate_login.with_signature(certificate_pem, challenge,
                                                softtoken.sign_challenge(key, challenge))


def advance(system: PartnerCa, delta: timedelta) -> None:
    clock = system.clock
    assert isinstance(clock, ManualClock)
    clock.advance(delta)


class HttpServer:
    """An ASGI app served by uvicorn in a thread on a socket bound here (no port race)."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(128)
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the test HTTP server did not start")
            self.thread.join(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


def request_body(key: softtoken.UserKey, user: str = USER,
                 password: str = PASSWORD) -> dict[str, str]:
    """The JSON of a certificate request or renewal over the portal API."""
    return {"csr_pem": softtoken.make_csr(key, user), "revocation_password": password,
            "revocation_password_again": password}


def until(check: Any, what: str, timeout: float = 60) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail naming ``what``."""
    import time

    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return found


def listener() -> Any:
    """A socket bound to a free port on 127.0.0.1 and listening, to hand to a server (its
    ``*_LISTEN`` setting ``fd:N``): no port is guessed and raced for."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def port_of(sock: Any) -> int:
    return int(sock.getsockname()[1])


def refused_port() -> Any:
    """A socket bound to a port without listening: connecting there is refused for as long
    as the caller holds it (nothing else can take the port meanwhile)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def inherited_fds(env: dict[str, str]) -> tuple[int, ...]:
    """The descriptors ``env``'s ``fd:N`` settings name: what a server process must inherit."""
    return tuple(int(v[3:]) for k, v in env.items()
                 if k.endswith("_LISTEN") and v.startswith("fd:"))


def smtp_server(handler: Any) -> tuple[Any, int]:
    """aiosmtpd serving ``handler`` on a socket bound here; (controller, port)."""
    from aiosmtpd.controller import Controller

    sock = listener()

    class BoundController(Controller):  # type: ignore[misc]
        def _create_server(self) -> Any:
            return self.loop.create_server(self._factory_invoker, sock=sock)

        def stop(self, *args: Any, **kwargs: Any) -> None:
            super().stop(*args, **kwargs)
            sock.close()

    controller = BoundController(handler, hostname="127.0.0.1", port=port_of(sock))
    controller.start()
    return controller, port_of(sock)


def closed_by_server(host: str, port: int, send: list[bytes], pause: float,
                     limit: float) -> float:
    """Open a connection, send ``send`` a piece every ``pause`` seconds (then nothing), and
    return how long the server took to close it; fails past ``limit`` seconds."""
    import socket
    import time

    began = time.monotonic()
    with socket.create_connection((host, port), timeout=1) as conn:
        pieces = list(send)
        while time.monotonic() - began < limit:
            if pieces:
                try:
                    conn.sendall(pieces.pop(0))
                except OSError:
                    return time.monotonic() - began
            try:
                conn.settimeout(pause)
                if conn.recv(4096) == b"":
                    return time.monotonic() - began
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - began
    raise AssertionError(f"{host}:{port} still held the connection after {limit} s")


def check_slow_clients_dropped(url: str, seconds: float) -> None:
    """Issue 26 item 10: a header sent a byte at a time, no byte at all, and a body that never
    comes are each dropped ``seconds`` (the listener's deadline) after they began."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    trickle = [bytes([b]) for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200]
    body = [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"]
    for send, pause in ((trickle, 0.2), ([], 0.5), (body, 0.5)):
        took = closed_by_server(host, port, send, pause, seconds + 10)
        assert seconds - 0.5 <= took <= seconds + 5, (url, took)
