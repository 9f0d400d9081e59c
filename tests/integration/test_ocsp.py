"""The OCSP responder, judged by `openssl ocsp`, curl and pkilint, over real HTTP."""

from __future__ import annotations

import base64
import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from adapters.ca.ocsp_signing import OcspPublisher
from adapters.entrypoints.bootstrap import PartnerCa
from adapters.entrypoints.ca_wiring import ocsp_publisher_of
from adapters.entrypoints.relying_wiring import responder_of
from adapters.relying.ocsp_http import OcspAsgi, OcspResponder
from ca_core.authority import Authority
from ca_core.clock import ManualClock
from ca_core.eventmodel import all_events
from tests.support import HttpServer, enroll, make_system, register

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@dataclass
class Ocsp:
    system: PartnerCa
    responder: OcspResponder
    server: HttpServer
    tmp: Path
    app: OcspAsgi
    publisher: OcspPublisher | None = None

    def maintain(self) -> int:
        """What the maintainer and each worker do every poll interval."""
        if self.publisher is None:  # the CA role's: signs what the responder serves
            self.publisher = ocsp_publisher_of(self.system.ca, self.system.settings)
        done = self.publisher.step()
        self.app.sync()
        return done

    def files(self, cert_pem: str) -> tuple[Path, Path, Path]:
        authority = self.system.ca.authority()
        (self.tmp / "issuing.pem").write_text(authority.issuing_certificate_pem)
        (self.tmp / "chain.pem").write_text(authority.issuing_certificate_pem
                                            + authority.root_certificate_pem)
        (self.tmp / "leaf.pem").write_text(cert_pem)
        return self.tmp / "issuing.pem", self.tmp / "chain.pem", self.tmp / "leaf.pem"

    def openssl(self, cert_pem: str, *extra: str) -> str:
        issuing, chain, leaf = self.files(cert_pem)
        done = subprocess.run(
            ["openssl", "ocsp", "-issuer", str(issuing), "-cert", str(leaf), "-CAfile", str(chain),
             "-url", f"{self.server.url}/ocsp", *extra], capture_output=True, text=True, timeout=30)
        return done.stdout + done.stderr


@pytest.fixture
def service(tmp_path: Path, database_url: str) -> Iterator[Ocsp]:
    system = make_system(tmp_path / "data", database_url, start=NOW)
    responder = responder_of(system.ca, system.settings)
    app = OcspAsgi(responder, poll_seconds=3600)  # the test syncs explicitly
    server = HttpServer(app)
    yield Ocsp(system, responder, server, tmp_path, app)
    server.close()
    system.close()


def test_openssl_ocsp_post_says_good_then_revoked_with_reason_and_time(service: Ocsp) -> None:
    register(service.system)
    me = enroll(service.system)
    service.maintain()
    before = service.openssl(me.picked.certificate_pem)
    assert "Response verify OK" in before and "leaf.pem: good" in before, before
    service.system.ca.revoke(me.picked.serial, "keyCompromise", operator="ops-anna")
    service.maintain()
    after = service.openssl(me.picked.certificate_pem)
    revoked_at = service.system.ca.certificate(me.picked.serial).revoked_at
    assert revoked_at is not None
    assert "Response verify OK" in after and "leaf.pem: revoked" in after, after
    assert "Reason: keyCompromise" in after
    assert f"Revocation Time: {revoked_at.strftime('%b %e %H:%M:%S %Y GMT')}" in after


def test_rfc5019_get_with_curl_and_caching_headers(service: Ocsp) -> None:
    register(service.system)
    me = enroll(service.system)
    service.maintain()
    issuing, chain, leaf = service.files(me.picked.certificate_pem)
    request = service.tmp / "req.der"
    subprocess.run(["openssl", "ocsp", "-issuer", str(issuing), "-cert", str(leaf), "-no_nonce",
                    "-reqout", str(request)], check=True, capture_output=True)
    url = f"{service.server.url}/ocsp/" + quote(base64.b64encode(request.read_bytes()).decode(),
                                                safe="")
    response, headers = service.tmp / "resp.der", service.tmp / "headers.txt"
    subprocess.run(["curl", "-sS", "-D", str(headers), "-o", str(response), url], check=True)
    text = headers.read_text().lower()
    assert "content-type: application/ocsp-response" in text
    assert "cache-control: max-age=" in text and "etag: " in text and "last-modified: " in text
    checked = subprocess.run(["openssl", "ocsp", "-respin", str(response), "-issuer", str(issuing),
                              "-cert", str(leaf), "-CAfile", str(chain)],
                             capture_output=True, text=True)
    assert "Response verify OK" in checked.stderr and "leaf.pem: good" in checked.stdout
    etag = next(line.split(":", 1)[1].strip() for line in headers.read_text().splitlines()
                if line.lower().startswith("etag:"))
    again = httpx.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    # the cached answer for these exact request bytes goes when the serial is re-signed
    service.system.ca.revoke(me.picked.serial, "superseded", operator="ops")
    service.maintain()
    after = ocsp.load_der_ocsp_response(httpx.get(url, headers={"If-None-Match": etag}).content)
    assert after.certificate_status == ocsp.OCSPCertStatus.REVOKED


def test_a_conditional_get_first_never_leaves_an_empty_answer_in_a_worker_cache(
        service: Ocsp) -> None:
    """A cache or CDN in front revalidates with If-None-Match; a worker that had not seen the
    request yet answers 304 and still gives the whole response to the next plain GET."""
    register(service.system)
    me = enroll(service.system)
    service.maintain()
    der = _request(me.picked.certificate_pem, service.system.ca.authority().issuing_certificate_pem)
    path = "/ocsp/" + quote(base64.b64encode(der).decode(), safe="")
    first = httpx.get(service.server.url + path)
    etag = first.headers["etag"]
    other_worker = HttpServer(OcspAsgi(service.responder, poll_seconds=3600))  # empty cache
    try:
        revalidated = httpx.get(other_worker.url + path, headers={"If-None-Match": etag})
        assert revalidated.status_code == 304 and revalidated.content == b""
        for _ in range(2):
            plain = httpx.get(other_worker.url + path)
            assert plain.status_code == 200 and plain.content == first.content
            assert ocsp.load_der_ocsp_response(plain.content).certificate_status \
                == ocsp.OCSPCertStatus.GOOD
        mismatch = httpx.get(other_worker.url + path, headers={"If-None-Match": '"other"'})
        assert mismatch.status_code == 200 and mismatch.content == first.content
    finally:
        other_worker.close()


def _two_certificates(cert_pem: str, issuer_pem: str) -> bytes:
    """One OCSPRequest naming the same certificate twice (cryptography cannot build one)."""
    from asn1crypto import ocsp as asn1_ocsp

    one = asn1_ocsp.OCSPRequest.load(_request(cert_pem, issuer_pem))
    single = one["tbs_request"]["request_list"][0]
    return bytes(asn1_ocsp.OCSPRequest(
        {"tbs_request": {"request_list": [single, single]}}).dump())


def test_a_request_naming_two_certificates_is_malformed_and_openssl_says_so(
        service: Ocsp, caplog: pytest.LogCaptureFixture) -> None:
    register(service.system)
    me = enroll(service.system)
    service.maintain()
    issuer = service.system.ca.authority().issuing_certificate_pem
    body = _two_certificates(me.picked.certificate_pem, issuer)
    with caplog.at_level("INFO", logger="partner_ca.ocsp"):
        answer = _post(service, body)
    assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert "Traceback" not in caplog.text and "more than one certificate" in caplog.text
    (service.tmp / "other.pem").write_text(me.picked.certificate_pem)
    said = service.openssl(me.picked.certificate_pem, "-cert", str(service.tmp / "other.pem"))
    assert "malformedrequest" in said.lower()


def _request(cert_pem: str, issuer_pem: str, algorithm: hashes.HashAlgorithm | None = None,
             nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_pem_x509_certificate(cert_pem.encode()),
        x509.load_pem_x509_certificate(issuer_pem.encode()), algorithm or hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _post(service: Ocsp, body: bytes) -> ocsp.OCSPResponse:
    reply = httpx.post(f"{service.server.url}/ocsp", content=body,
                       headers={"Content-Type": "application/ocsp-request"})
    assert reply.status_code == 200, reply.status_code
    return ocsp.load_der_ocsp_response(reply.content)


def test_a_nonce_is_echoed_in_a_fresh_response_and_no_nonce_signs_nothing(service: Ocsp) -> None:
    register(service.system)
    me = enroll(service.system)
    service.maintain()
    issuer = service.system.ca.authority().issuing_certificate_pem
    position = service.system.ca.recorder.max_notification_id()
    plain = _post(service, _request(me.picked.certificate_pem, issuer, hashes.SHA256()))
    assert plain.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert service.responder.fresh_signatures == 0, "no nonce: answered from the store"
    assert service.system.ca.recorder.max_notification_id() == position, "event store untouched"
    nonce = os.urandom(16)
    fresh = _post(service, _request(me.picked.certificate_pem, issuer, nonce=nonce))
    assert fresh.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert service.responder.fresh_signatures == 1
    assert fresh.signature != plain.signature


def test_other_issuer_unauthorized_unknown_serial_never_good(service: Ocsp) -> None:
    register(service.system)
    me = enroll(service.system)
    service.maintain()
    foreign = _self_signed("Some Other CA")
    other = _post(service, _request(foreign, foreign))
    assert other.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    issuing, chain, _ = service.files(me.picked.certificate_pem)
    unknown = subprocess.run(["openssl", "ocsp", "-issuer", str(issuing), "-serial", "0x1234abcd",
                              "-url", f"{service.server.url}/ocsp", "-CAfile", str(chain)],
                             capture_output=True, text=True)
    assert "good" not in unknown.stdout
    assert "unauthorized" in (unknown.stdout + unknown.stderr)


def _self_signed(name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_the_root_answers_for_the_issuing_ca_so_whole_chains_can_be_checked(
        service: Ocsp) -> None:
    """nginx's ``ssl_ocsp on`` asks about every certificate of the chain but the root: the
    root-signed answer about the issuing CA is pre-signed by the maintainer and kept fresh."""
    service.maintain()
    authority = service.system.ca.authority()
    (service.tmp / "root.pem").write_text(authority.root_certificate_pem)
    (service.tmp / "issuing.pem").write_text(authority.issuing_certificate_pem)
    for algorithm in ("-sha1", "-sha256"):
        done = subprocess.run(
            ["openssl", "ocsp", "-issuer", str(service.tmp / "root.pem"), algorithm,
             "-cert", str(service.tmp / "issuing.pem"), "-CAfile", str(service.tmp / "root.pem"),
             "-url", f"{service.server.url}/ocsp", "-no_nonce", "-respout",
             str(service.tmp / "ca.der")], capture_output=True, text=True, timeout=30)
        assert "Response verify OK" in done.stderr, done.stderr
        assert "issuing.pem: good" in done.stdout, done.stdout
    lint = subprocess.run(["lint_ocsp_response", "lint", "-s", "ERROR",
                           str(service.tmp / "ca.der")], capture_output=True, text=True)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    first = ocsp.load_der_ocsp_response((service.tmp / "ca.der").read_bytes())
    assert first.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        x509.load_pem_x509_certificate(authority.root_certificate_pem.encode()).public_key()
    ).digest
    clock = service.system.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(hours=13))  # past half of the default 24 h validity
    service.maintain()
    again = _post(service, _request(authority.issuing_certificate_pem,
                                    authority.root_certificate_pem))
    assert again.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert again.this_update_utc > first.this_update_utc


def test_fuzzed_requests_never_get_a_5xx_or_stop_the_responder(service: Ocsp) -> None:
    register(service.system)
    me = enroll(service.system)
    service.maintain()
    issuer = service.system.ca.authority().issuing_certificate_pem
    valid = _request(me.picked.certificate_pem, issuer)
    rng = random.Random(20261126)  # reproducible fuzzing
    bodies = [b"", b"\x30", b"\x30\x80", os.urandom(64), valid[:-3], valid[: len(valid) // 2],
              valid + b"\x00" * 10, b"\x30\x82\xff\xff" + os.urandom(100), os.urandom(200_000),
              _request(me.picked.certificate_pem, issuer, hashes.SHA512()),
              _request(me.picked.certificate_pem, issuer, hashes.SHA384())]
    for _ in range(150):
        mutated = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        bodies.append(bytes(mutated))
    statuses = set()
    with httpx.Client(base_url=service.server.url) as client:
        for body in bodies:
            reply = client.post("/ocsp", content=body)
            assert reply.status_code == 200, (reply.status_code, body[:40])
            statuses.add(ocsp.load_der_ocsp_response(reply.content).response_status)
        for path in ("/ocsp/%%%", "/ocsp/AAAA", "/ocsp/" + "A" * 10000, "/ocsp/MA=="):
            assert client.get(path).status_code == 200
        assert ocsp.OCSPResponseStatus.MALFORMED_REQUEST in statuses
        good = ocsp.load_der_ocsp_response(client.post("/ocsp", content=valid).content)
        assert good.certificate_status == ocsp.OCSPCertStatus.GOOD, "still answering"


def test_pkilint_finds_no_error_in_good_and_revoked_responses_and_the_signer(
        service: Ocsp) -> None:
    register(service.system)
    me = enroll(service.system)
    service.maintain()
    issuer = service.system.ca.authority().issuing_certificate_pem
    good = httpx.post(f"{service.server.url}/ocsp",
                      content=_request(me.picked.certificate_pem, issuer)).content
    service.system.ca.revoke(me.picked.serial, "affiliationChanged", operator="ops")
    service.maintain()
    revoked = httpx.post(f"{service.server.url}/ocsp",
                         content=_request(me.picked.certificate_pem, issuer)).content
    assert ocsp.load_der_ocsp_response(revoked).certificate_status == ocsp.OCSPCertStatus.REVOKED
    signer = service.system.ca.authority().ocsp_signer_pem
    assert signer is not None
    (service.tmp / "signer.pem").write_text(signer)
    (service.tmp / "issuing.pem").write_text(issuer)
    for name, der in (("good.der", good), ("revoked.der", revoked)):
        (service.tmp / name).write_bytes(der)
        lint = subprocess.run(["lint_ocsp_response", "lint", "-s", "ERROR",
                               str(service.tmp / name)], capture_output=True, text=True)
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    for command in (["lint_pkix_cert", "lint", "-s", "ERROR", str(service.tmp / "signer.pem")],
                    ["lint_pkix_signer_signee_cert_chain", "lint", "-s", "ERROR",
                     str(service.tmp / "issuing.pem"), str(service.tmp / "signer.pem")]):
        lint = subprocess.run(command, capture_output=True, text=True)
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr


def test_signer_is_rotated_before_it_expires_and_responses_follow(service: Ocsp) -> None:
    register(service.system)
    me = enroll(service.system)
    service.maintain()
    first = service.system.ca.authority().ocsp_signer_pem
    clock = service.system.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(days=21))  # 30-day signer, renewed 10 days before its end
    service.maintain()
    authority = service.system.ca.authority()
    assert authority.ocsp_signer_pem != first
    issued = [e for _, e in all_events(service.system.ca)
              if isinstance(e, Authority.OcspSignerIssued)]
    assert len(issued) == 2
    row = service.responder.store.get(me.picked.serial)
    assert row is not None and row.signer_serial == issued[-1].serial
    response = ocsp.load_der_ocsp_response(row.sha1_der)
    assert response.certificates[0].serial_number == int(issued[-1].serial, 16)
    assert row.next_update <= issued[-1].not_after


def test_the_answer_cache_is_bounded_in_bytes_whatever_clients_send(service: Ocsp) -> None:
    """Issue 26 item 9: without a delegated signer, a request with a nonce gets the
    pre-signed answer, and every new nonce is a new cache key; 1,000,000 of them held
    about 3.4 GiB per worker. The cache is bounded in bytes, least recently used out."""
    register(service.system)
    me, other = enroll(service.system), enroll(service.system)
    service.maintain()
    issuer = service.system.ca.authority().issuing_certificate_pem
    responder = responder_of(service.system.ca, service.system.settings)
    responder._nonce_signer = lambda generation: None  # type: ignore[method-assign]
    limit = 60_000
    app = OcspAsgi(responder, poll_seconds=3600, max_bytes=limit)
    server = HttpServer(app)
    try:
        kept = _request(other.picked.certificate_pem, issuer)
        with httpx.Client(base_url=server.url) as client:
            for i in range(300):
                body = _request(me.picked.certificate_pem, issuer, nonce=os.urandom(16))
                reply = client.post("/ocsp", content=body,
                                    headers={"Content-Type": "application/ocsp-request"})
                assert reply.status_code == 200
                assert app.cached_bytes <= limit
                if i % 10 == 0:  # a relying party asking all along stays cached
                    client.post("/ocsp", content=kept,
                                headers={"Content-Type": "application/ocsp-request"})
            assert b"POST " + kept in app.cache
            assert 10 < len(app.cache) < 60
            assert sum(len(k) + len(e.body) for k, e in app.cache.items()) < app.cached_bytes
            assert sum(map(len, app.keys_by_serial.values())) == len(app.cache)
            # a re-signed serial still drops every cached key of it
            service.system.ca.revoke(me.picked.serial, "keyCompromise", "ops-anna")
            ocsp_publisher_of(service.system.ca, service.system.settings).step()
            app.sync()
            assert me.picked.serial not in app.keys_by_serial
            revoked = ocsp.load_der_ocsp_response(client.post(
                "/ocsp", content=_request(me.picked.certificate_pem, issuer),
                headers={"Content-Type": "application/ocsp-request"}).content)
            assert revoked.certificate_status == ocsp.OCSPCertStatus.REVOKED
    finally:
        server.close()
