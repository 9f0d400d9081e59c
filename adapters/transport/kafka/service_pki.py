"""The service hierarchy for Kafka: a service CA, kept apart from the partners' issuing CA,
that certifies the broker, each role's TLS client identity and each role's message-signing
key. ``partner-ca kafka credentials DIR`` writes it; docs/kafka.md says who gets which file.

Layout (one folder per role; a host gets only the folders of the roles it runs)::

    DIR/issuer/service-ca.key  service-ca.pem   the service CA (keep it off the role hosts)
    DIR/broker/keystore.pem    truststore.pem   for the broker (PEM keystore: key + chain)
    DIR/<role>/service-ca.pem                   trust anchor: the broker's and peers' certs
    DIR/<role>/tls.crt  tls.key                 mutual-TLS client identity (CN = principal)
    DIR/<role>/signing.crt  signing.key         Ed25519 key the role signs its records with
    DIR/<role>/peers.pem                        signing certificates it accepts records from

Roles: ``portal`` and ``ca`` (the two applications), ``reader`` (another portal service:
reads ``ca-events`` and ``portal-events``), ``admin`` (topics and ACLs; a super user).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: principal names: the certificate's CN, which the broker maps to ``User:<CN>``
PRINCIPALS = {"portal": "partner-ca-portal", "ca": "partner-ca-ca",
              "reader": "partner-ca-reader", "admin": "partner-ca-admin",
              "broker": "partner-ca-broker"}
#: which roles' records each role accepts (their signing certificates go to its peers.pem)
ACCEPTS = {"portal": ("ca",), "ca": ("portal",), "reader": ("ca", "portal"), "admin": ()}
#: roles that publish records, hence hold a signing key
SIGNERS = ("portal", "ca")
ORGANIZATION = "Partner CA services"


@dataclass(frozen=True)
class Issuer:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def new_issuer(now: datetime, days: int) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Partner CA service CA", "service hierarchy")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256()))
    return Issuer(key, cert)


def load_issuer(folder: Path) -> Issuer:
    key = serialization.load_pem_private_key((folder / "service-ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return Issuer(key, x509.load_pem_x509_certificate((folder / "service-ca.pem").read_bytes()))


def _certify(issuer: Issuer, public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
             common_name: str, unit: str, now: datetime, days: int | float,
             usages: list[x509.ObjectIdentifier] | None,
             hosts: tuple[str, ...] = ()) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(common_name, unit))
               .issuer_name(issuer.certificate.subject).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                            False, False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer.key.public_key()), False))
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer.key, hashes.SHA256())


def write_tls_identity(issuer: Issuer, folder: Path, role: str, now: datetime,
                       days: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certify(issuer, key.public_key(), PRINCIPALS[role], "kafka client", now, days,
                    [ExtendedKeyUsageOID.CLIENT_AUTH])
    _write(folder / "tls.key", _key_pem(key), secret=True)
    _write(folder / "tls.crt", _pem(cert))
    _write(folder / "service-ca.pem", _pem(issuer.certificate))


def write_signing_key(issuer: Issuer, folder: Path, role: str, now: datetime,
                      days: float) -> x509.Certificate:
    """A new Ed25519 record-signing key for ``role``; its certificate's validity is the
    window in which consumers accept it."""
    key = ed25519.Ed25519PrivateKey.generate()
    cert = _certify(issuer, key.public_key(), PRINCIPALS[role], "kafka record signing", now,
                    days, None)
    _write(folder / "signing.key", _key_pem(key), secret=True)
    _write(folder / "signing.crt", _pem(cert))
    return cert


def write_broker(issuer: Issuer, folder: Path, hosts: tuple[str, ...], now: datetime,
                 days: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certify(issuer, key.public_key(), PRINCIPALS["broker"], "kafka broker", now, days,
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], hosts)
    _write(folder / "keystore.pem", _key_pem(key) + _pem(cert), secret=True)
    _write(folder / "truststore.pem", _pem(issuer.certificate))


def add_peer(folder: Path, certificate: x509.Certificate) -> None:
    """Append a signing certificate to a role's peers.pem (kept: those already there)."""
    path = folder / "peers.pem"
    _write(path, (path.read_bytes() if path.exists() else b"") + _pem(certificate))


def generate(out: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
             days: int = 365, signing_days: float = 90.0,
             now: datetime | None = None) -> None:
    """The whole set, fresh (an existing DIR is refused by the caller)."""
    now = now or datetime.now(UTC)
    issuer = new_issuer(now, days * 5)
    _write(out / "issuer" / "service-ca.key", _key_pem(issuer.key), secret=True)
    _write(out / "issuer" / "service-ca.pem", _pem(issuer.certificate))
    write_broker(issuer, out / "broker", hosts, now, days)
    for role in ACCEPTS:
        write_tls_identity(issuer, out / role, role, now, days)
    signing = {role: write_signing_key(issuer, out / role, role, now, signing_days)
               for role in SIGNERS}
    for role, accepted in ACCEPTS.items():
        _write(out / role / "peers.pem", b"".join(_pem(signing[a]) for a in accepted))


def rotate_signing_key(out: Path, role: str, signing_days: float = 90.0,
                       now: datetime | None = None) -> x509.Certificate:
    """Step 1 of a rotation: a new signing key for ``role``, its certificate added to the
    peers.pem of every role that accepts ``role``'s records (the old one stays there and is
    accepted until its notAfter: the overlap). The role signs with the new key once
    restarted."""
    if role not in SIGNERS:
        raise ValueError(f"{role!r} does not sign records; one of {', '.join(SIGNERS)}")
    now = now or datetime.now(UTC)
    issuer = load_issuer(out / "issuer")
    cert = write_signing_key(issuer, out / role, role, now, signing_days)
    for consumer, accepted in ACCEPTS.items():
        if role in accepted and (out / consumer).is_dir():
            add_peer(out / consumer, cert)
    return cert


def add_reader(out: Path, name: str, days: int = 365, now: datetime | None = None) -> Path:
    """Credentials for another portal service that reads ``ca-events`` and
    ``portal-events``: ``DIR/<name>/`` with a TLS identity (CN = ``name``, the principal
    ``User:<name>`` to grant) and the signing certificates of both publishers."""
    if not name or any(c in name for c in "/,=+\\\"<>;") or name in (*ACCEPTS, "issuer",
                                                                     "broker"):
        raise ValueError(f"{name!r} cannot name a reader (plain letters, digits, '-', '.')")
    now = now or datetime.now(UTC)
    issuer = load_issuer(out / "issuer")
    folder = out / name
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certify(issuer, key.public_key(), name, "kafka client", now, days,
                    [ExtendedKeyUsageOID.CLIENT_AUTH])
    _write(folder / "tls.key", _key_pem(key), secret=True)
    _write(folder / "tls.crt", _pem(cert))
    _write(folder / "service-ca.pem", _pem(issuer.certificate))
    _write(folder / "peers.pem", (out / "reader" / "peers.pem").read_bytes())
    return folder

if __name__ == "__main__":  # deploy/kafka/start.sh, before the package may be installed
    generate(Path(sys.argv[1]))
    print(f"service hierarchy written to {sys.argv[1]}")
