"""Pure X.509 construction: the CA hierarchy and the end-entity client-auth profile (R4).

No I/O here: keys and times are passed in, certificates come out.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
)

from ca_core.policy import IssuancePolicy
from ca_core.signatures import SigningKey, hash_for

SERIAL_BYTES = 16


def new_serial() -> int:
    """16 random bytes from the OS CSPRNG, forced positive and exactly 16 DER bytes.

    The top bit is cleared (positive INTEGER) and the next one set (no leading
    zero octet), leaving 126 random bits – well over the 64 the Baseline Requirements ask.
    """
    value = int.from_bytes(secrets.token_bytes(SERIAL_BYTES), "big")
    return (value & ((1 << 127) - 1)) | (1 << 126)


def one_year_after(start: datetime) -> datetime:
    """The last second of a validity of exactly one year (RFC 5280 bounds are inclusive)."""
    try:
        anniversary = start.replace(year=start.year + 1)
    except ValueError:  # 29 February
        anniversary = start.replace(year=start.year + 1, day=28) + timedelta(days=1)
    return anniversary - timedelta(seconds=1)


def ca_name(common_name: str, organization: str, country: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, country),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def end_entity_name(user_id: str, module: str, policy: IssuancePolicy) -> x509.Name:
    """Subject built from the user identifier and module – never copied from the CSR."""
    return x509.Name([
        *_organization(policy.country, policy.organization),
        x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, module)]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, user_id)]),
    ])


@lru_cache(maxsize=16)
def _organization(country: str, organization: str) -> tuple[x509.RelativeDistinguishedName, ...]:
    """The subject's first two RDNs, the same in every certificate (built once)."""
    return (x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, country)]),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)]))


def subject_identity(cert: x509.Certificate) -> tuple[str, str]:
    """(user_id, module) read back from an end-entity certificate we issued."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return (str(cn[0].value) if cn else "", str(ou[0].value) if ou else "")


def build_root(key: SigningKey, name: x509.Name, now: datetime, years: int = 20) -> x509.Certificate:
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(new_serial())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hash_for(key))
    )


def build_issuing(
    root_key: SigningKey,
    root: x509.Certificate,
    key: SigningKey,
    name: x509.Name,
    now: datetime,
    policy: IssuancePolicy,
    years: int = 10,
) -> x509.Certificate:
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.subject)
        .public_key(public)
        .serial_number(new_serial())
        .not_valid_before(now)
        .not_valid_after(min(now + timedelta(days=365 * years), root.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(authority_key_id(root), critical=False)
        .add_extension(_policies(policy), critical=False)
        .sign(root_key, hash_for(root_key))
    )


def build_end_entity(
    issuer_key: SigningKey,
    issuer: x509.Certificate,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    subject: x509.Name,
    serial: int,
    not_before: datetime,
    policy: IssuancePolicy,
) -> x509.Certificate:
    """The client-authentication profile: 1 year, critical KU, EKU clientAuth, CDP, AIA, policy."""
    aki, aia, policies = _issuer_extensions(issuer, policy)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(one_year_after(not_before))
        .add_extension(_NOT_A_CA, critical=True)
        .add_extension(_key_usage(isinstance(public_key, rsa.RSAPublicKey)), critical=True)
        .add_extension(_CLIENT_AUTH, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        .add_extension(_crl_distribution_points(policy.crl_url_for(serial)), critical=False)
        .add_extension(aia, critical=False)
        .add_extension(policies, critical=False)
        .sign(issuer_key, hash_for(issuer_key))
    )


# The extensions every end-entity certificate of an issuer shares, built once (immutable).
_NOT_A_CA = x509.BasicConstraints(ca=False, path_length=None)
_CLIENT_AUTH = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])


@lru_cache(maxsize=2)
def _key_usage(key_encipherment: bool) -> x509.KeyUsage:
    """digitalSignature (and keyEncipherment for RSA keys)."""
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=key_encipherment,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)


@lru_cache(maxsize=16)
def _issuer_extensions(issuer: x509.Certificate, policy: IssuancePolicy) -> tuple[
        x509.AuthorityKeyIdentifier, x509.AuthorityInformationAccess, x509.CertificatePolicies]:
    aia = x509.AuthorityInformationAccess([
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                               x509.UniformResourceIdentifier(policy.ocsp_url)),
        x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                               x509.UniformResourceIdentifier(policy.ca_issuers_url)),
    ])
    return authority_key_id(issuer), aia, _policies(policy)


@lru_cache(maxsize=256)
def _crl_distribution_points(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None,
        crl_issuer=None)])


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )


def _policies(policy: IssuancePolicy) -> x509.CertificatePolicies:
    oid = x509.ObjectIdentifier(policy.policy_oid)
    return x509.CertificatePolicies([x509.PolicyInformation(oid, None)])


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def split_pems(text: str) -> list[str]:
    """The PEM certificates of a chain file, each ending in a newline, in file order."""
    end = "-----END CERTIFICATE-----"
    return [block.strip() + "\n" + end + "\n" for block in text.split(end) if block.strip()]


def from_pem(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())
