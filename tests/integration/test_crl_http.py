"""The CRL server: published within the configured delay after a revocation, served at the CDP URL."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from adapters.ca.publishing import CrlPublisher
from adapters.entrypoints.bootstrap import PartnerCa
from adapters.entrypoints.ca_wiring import crl_publisher
from adapters.relying.crl_http import crl_app
from ca_core.clock import ManualClock
from projections.feed import catch_up
from tests.support import HttpServer, enroll, make_system, register

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@dataclass
class CrlService:
    system: PartnerCa
    publisher: CrlPublisher
    server: HttpServer
    tmp: Path

    @property
    def clock(self) -> ManualClock:
        assert isinstance(self.system.clock, ManualClock)
        return self.system.clock

    def fetch(self) -> Path:
        """curl the URL written into the certificates' CRL distribution point (its path)."""
        target = self.tmp / "fetched.crl"
        subprocess.run(["curl", "-sSf", "-o", str(target), f"{self.server.url}/crl/issuing.crl"],
                       check=True)
        return target

    def verify(self, cert_pem: str, crl: Path) -> subprocess.CompletedProcess[str]:
        authority = self.system.ca.authority()
        (self.tmp / "root.pem").write_text(authority.root_certificate_pem)
        (self.tmp / "issuing.pem").write_text(authority.issuing_certificate_pem)
        (self.tmp / "leaf.pem").write_text(cert_pem)
        return subprocess.run(
            ["openssl", "verify", "-crl_check", "-CRLfile", str(crl), "-CAfile",
             str(self.tmp / "root.pem"), "-untrusted", str(self.tmp / "issuing.pem"),
             str(self.tmp / "leaf.pem")], capture_output=True, text=True)


@pytest.fixture
def service(tmp_path: Path, database_url: str) -> Iterator[CrlService]:
    system = make_system(tmp_path / "data", database_url, start=NOW)
    publisher = crl_publisher(system.ca, system.settings)
    server = HttpServer(crl_app(system.ca, publisher.target, publisher.status.view))
    yield CrlService(system, publisher, server, tmp_path)
    server.close()
    system.close()


def test_crl_follows_revocations_after_the_delay_and_openssl_rejects_the_revoked(
        service: CrlService) -> None:
    register(service.system)
    good, bad = enroll(service.system), enroll(service.system)
    distribution = x509.load_pem_x509_certificate(good.picked.certificate_pem.encode()).extensions \
        .get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name
    assert distribution is not None
    assert distribution[0].value.endswith("/crl/issuing.crl")
    assert httpx.get(f"{service.server.url}/crl/issuing.crl").status_code == 404, "not yet"
    assert service.publisher.tick(), "the first CRL is published at once"
    first = service.fetch()
    assert service.verify(bad.picked.certificate_pem, first).returncode == 0
    service.system.ca.revoke(bad.picked.serial, "keyCompromise", operator="ops-anna")
    assert not service.publisher.tick(), "the delay (60 s) has not passed"
    service.clock.advance(timedelta(seconds=61))
    assert service.publisher.tick(), "published within the delay after the revocation"
    second = service.fetch()
    crl = x509.load_der_x509_crl(second.read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    refused = service.verify(bad.picked.certificate_pem, second)
    assert refused.returncode != 0 and "revoked" in refused.stdout + refused.stderr
    assert service.verify(good.picked.certificate_pem, second).returncode == 0


def test_crl_is_republished_on_schedule_and_served_with_cache_headers(
        service: CrlService) -> None:
    service.publisher.tick()
    reply = httpx.get(f"{service.server.url}/crl/issuing.crl")
    assert reply.headers["content-type"] == "application/pkix-crl"
    assert "last-modified" in reply.headers and "etag" in reply.headers
    assert httpx.get(f"{service.server.url}/crl/issuing.crl",
                     headers={"If-None-Match": reply.headers["etag"]}).status_code == 304
    assert not service.publisher.tick()
    service.clock.advance(timedelta(hours=12, seconds=1))  # half of the 24-hour validity
    assert service.publisher.tick()
    assert httpx.get(f"{service.server.url}/crl/issuing.crl").headers["etag"] != \
        reply.headers["etag"]
    issuing = httpx.get(f"{service.server.url}/ca/issuing.cer")
    assert x509.load_der_x509_certificate(issuing.content).subject == \
        x509.load_pem_x509_certificate(
            service.system.ca.authority().issuing_certificate_pem.encode()).subject


def test_status_endpoint_now_and_at_a_moment(service: CrlService) -> None:
    register(service.system)
    me = enroll(service.system)
    before = service.clock.now()
    service.system.ca.revoke(me.picked.serial, "superseded", operator="ops-petr")
    service.publisher.tick()
    now = httpx.get(f"{service.server.url}/status/{me.picked.serial.lower()}").json()
    assert (now["status"], now["reason"]) == ("revoked", "superseded") and now["revoked_at"]
    # only what OCSP tells anyone: not whose certificate it is, nor who revoked it
    assert set(now) == {"serial", "status", "reason", "revoked_at"}
    assert "ops-petr" not in str(now) and me.picked.serial and "P24" not in str(now)
    earlier = httpx.get(f"{service.server.url}/status/{me.picked.serial}",
                        params={"at": before.isoformat()}).json()
    assert (earlier["status"], earlier["reason"]) == ("good", None)
    assert httpx.get(f"{service.server.url}/status/ABCDEF").status_code == 404
    assert httpx.get(f"{service.server.url}/status/not-hex").status_code == 400
    assert httpx.get(f"{service.server.url}/status/{me.picked.serial}",
                     params={"at": "yesterday"}).status_code == 400


def test_sharded_crls_each_certificate_names_its_shard_and_openssl_uses_it(
        tmp_path: Path) -> None:
    system = make_system(tmp_path / "data", start=NOW, crl_shards=4)
    publisher = crl_publisher(system.ca, system.settings)
    server = HttpServer(crl_app(system.ca, publisher.target, publisher.status.view))
    try:
        register(system)
        enrolled = [enroll(system) for _ in range(6)]
        service = CrlService(system, publisher, server, tmp_path)
        bad = enrolled[0]
        system.ca.revoke(bad.picked.serial, "keyCompromise", operator="ops")
        published = publisher.publish()
        assert x509.load_der_x509_crl(published.crls.full).get_revoked_certificate_by_serial_number(
            int(bad.picked.serial, 16)) is not None, "the full CRL stays complete"
        for me in enrolled:
            cert = x509.load_pem_x509_certificate(me.picked.certificate_pem.encode())
            url = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints) \
                .value[0].full_name[0].value
            assert url.endswith(f"/crl/shard-{cert.serial_number % 4}.crl")
            shard = tmp_path / "shard.crl"
            reply = httpx.get(server.url + "/crl/" + url.rsplit("/", 1)[1])
            assert reply.status_code == 200
            shard.write_bytes(reply.content)
            crl = x509.load_der_x509_crl(reply.content)
            idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
            assert idp.critical and idp.value.full_name[0].value == url
            verdict = service.verify(me.picked.certificate_pem, shard)
            if me is bad:
                assert verdict.returncode != 0 and "revoked" in verdict.stdout + verdict.stderr
            else:
                assert verdict.returncode == 0, verdict.stdout + verdict.stderr
        lint = subprocess.run(["lint_crl", "lint", "-s", "ERROR", "-t", "CRL", "-p", "PKIX",
                               str(tmp_path / "shard.crl")], capture_output=True, text=True)
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
        assert httpx.get(server.url + "/crl/shard-99999.crl").status_code == 404
        assert httpx.get(server.url + "/crl/../keys").status_code == 404
    finally:
        server.close()
        system.close()


def _served(service: CrlService) -> tuple[x509.CertificateRevocationList, httpx.Response]:
    reply = httpx.get(f"{service.server.url}/crl/issuing.crl")
    assert reply.status_code == 200
    return x509.load_der_x509_crl(reply.content), reply


def _headers_describe_the_body(crl: x509.CertificateRevocationList,
                               reply: httpx.Response) -> None:
    from email.utils import parsedate_to_datetime

    assert parsedate_to_datetime(reply.headers["last-modified"]) == crl.last_update_utc
    assert parsedate_to_datetime(reply.headers["expires"]) == crl.next_update_utc


def test_a_crl_published_from_the_command_line_is_the_one_served(
        service: CrlService, tmp_path: Path) -> None:
    """`partner-ca crl --out some-other-file` (the README's command) while the CRL server
    runs: the served CRL is the new one, headers and all."""
    import os

    from tests.support import PASSPHRASE

    register(service.system)
    me = enroll(service.system)
    assert service.publisher.tick()
    service.system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops")
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(service.system.settings.data_dir),
           "PARTNER_CA_DATABASE_URL": service.system.settings.database_url,
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE}
    done = subprocess.run(["partner-ca", "crl", "--out", str(tmp_path / "elsewhere.crl"),
                           "--json"], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    number = json.loads(done.stdout)["crl_number"]
    crl, reply = _served(service)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
    assert crl.get_revoked_certificate_by_serial_number(int(me.picked.serial, 16)) is not None
    assert (tmp_path / "elsewhere.crl").read_bytes() == reply.content
    _headers_describe_the_body(crl, reply)
    assert not service.publisher.tick(), "the served CRL is current: nothing to publish"
    assert not [p for p in service.publisher.target.parent.iterdir() if p.suffix == ".tmp"]


def test_a_publication_recorded_but_not_written_here_is_replaced_at_once(
        service: CrlService) -> None:
    """Another host (or a crash between the event and the file) recorded a newer CRL that
    this server does not have: it must not keep serving the older one."""
    register(service.system)
    me = enroll(service.system)
    assert service.publisher.tick()
    old, _ = _served(service)
    service.system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops")
    catch_up(service.publisher.status, service.system.ca)
    view = service.publisher.status.view
    service.system.ca.crls.publish_crls(view.revoked_entries(),
                                   view.max_tracking_id("ca") or 0)  # written nowhere here
    # this server knows what its CRL reflects: the revocation it lacks is pending, published
    # within PARTNER_CA_CRL_DELAY_SECONDS as any revocation is
    assert not service.publisher.tick()
    service.clock.advance(timedelta(seconds=61))
    assert service.publisher.tick()
    crl, reply = _served(service)
    assert crl.get_revoked_certificate_by_serial_number(int(me.picked.serial, 16)) is not None
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == service.system.ca.authority().crl_number == \
        old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 2
    _headers_describe_the_body(crl, reply)
    assert not service.publisher.tick()


def test_the_command_line_crl_writes_its_shards_where_they_are_served(tmp_path: Path) -> None:
    import os

    from tests.support import PASSPHRASE

    system = make_system(tmp_path / "data", start=NOW, crl_shards=3)
    register(system)
    me = enroll(system)
    system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops")
    system.close()
    env = {**os.environ, "PARTNER_CA_DATA_DIR": str(tmp_path / "data"),
           "PARTNER_CA_KEY_PASSPHRASE": PASSPHRASE, "PARTNER_CA_CRL_SHARDS": "3",
           "PARTNER_CA_NOW": NOW.isoformat()}
    done = subprocess.run(["partner-ca", "crl", "--json"], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["shards"] == 3
    shard = int(me.picked.serial, 16) % 3
    listed = x509.load_der_x509_crl((tmp_path / "data" / "crl" / f"shard-{shard}.crl")
                                    .read_bytes())
    assert listed.get_revoked_certificate_by_serial_number(int(me.picked.serial, 16))


def test_after_a_restart_a_served_crl_older_than_the_recorded_one_is_replaced_at_once(
        service: CrlService) -> None:
    register(service.system)
    me = enroll(service.system)
    assert service.publisher.tick()
    service.system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops")
    catch_up(service.publisher.status, service.system.ca)
    view = service.publisher.status.view
    service.system.ca.crls.publish_crls(view.revoked_entries(), view.max_tracking_id("ca") or 0)
    restarted = crl_publisher(service.system.ca, service.system.settings)
    assert restarted.tick(), "what the served CRL reflects is unknown: publish at once"
    crl, reply = _served(service)
    assert crl.get_revoked_certificate_by_serial_number(int(me.picked.serial, 16)) is not None
    _headers_describe_the_body(crl, reply)
    assert not restarted.tick()
