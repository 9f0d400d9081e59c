"""R4 end-entity profile, checked with cryptography and with OpenSSL as an independent judge."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.client import softtoken
from ca_core.policy import IssuancePolicy
from ca_core.x509profile import (
    build_end_entity,
    build_issuing,
    build_root,
    ca_name,
    end_entity_name,
    new_serial,
    one_year_after,
    to_pem,
)

POLICY = IssuancePolicy(crl_url="http://crl.example/issuing.crl",
                        ocsp_url="http://ocsp.example/", ca_issuers_url="http://ca.example/i.cer",
                        policy_oid="1.3.6.1.4.1.55555.7.7")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def hierarchy() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, x509.Certificate]:
    root_key = ec.generate_private_key(ec.SECP384R1())
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    root = build_root(root_key, ca_name("Test Root", "Org", "CZ"), NOW)
    issuing = build_issuing(root_key, root, issuing_key, ca_name("Test Issuing", "Org", "CZ"),
                            NOW, POLICY)
    return issuing_key, issuing, root


@pytest.fixture(scope="module")
def leaf(hierarchy: tuple[ec.EllipticCurvePrivateKey, x509.Certificate, x509.Certificate]
         ) -> x509.Certificate:
    issuing_key, issuing, _ = hierarchy
    user_key = softtoken.new_key()
    return build_end_entity(issuing_key, issuing, user_key.public_key(),
                            end_entity_name("P24-000123", "EPAK", POLICY), new_serial(), NOW,
                            POLICY)


def test_r4_validity_is_exactly_one_year(leaf: x509.Certificate) -> None:
    assert leaf.not_valid_before_utc == NOW
    assert leaf.not_valid_after_utc == datetime(2027, 3, 1, 11, 59, 59, tzinfo=UTC)
    assert one_year_after(datetime(2028, 2, 29, tzinfo=UTC)) == datetime(
        2029, 2, 28, 23, 59, 59, tzinfo=UTC)


def test_r4_serial_is_16_random_bytes_positive() -> None:
    serials = [new_serial() for _ in range(1000)]
    assert len(set(serials)) == 1000
    assert all(0 < s and s.bit_length() == 127 for s in serials)


def test_r4_extensions_of_the_client_profile(leaf: x509.Certificate,
                                             hierarchy: tuple[object, x509.Certificate, object]
                                             ) -> None:
    ext = leaf.extensions
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    issuing = hierarchy[1]
    assert aki.key_identifier == issuing.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    cdp = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == POLICY.crl_url
    aia = {d.access_method._name: d.access_location.value
           for d in ext.get_extension_for_class(x509.AuthorityInformationAccess).value}
    assert aia == {"OCSP": POLICY.ocsp_url, "caIssuers": POLICY.ca_issuers_url}
    policies = ext.get_extension_for_class(x509.CertificatePolicies).value
    assert policies[0].policy_identifier.dotted_string == POLICY.policy_oid


def test_r4_subject_comes_from_user_and_module_not_from_the_csr(leaf: x509.Certificate) -> None:
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "P24-000123"
    assert leaf.subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "EPAK"


def test_r4_openssl_verifies_the_chain_for_client_auth(
        leaf: x509.Certificate, hierarchy: tuple[object, x509.Certificate, x509.Certificate],
        tmp_path: Path) -> None:
    _, issuing, root = hierarchy
    (tmp_path / "root.pem").write_text(to_pem(root))
    (tmp_path / "issuing.pem").write_text(to_pem(issuing))
    (tmp_path / "leaf.pem").write_text(to_pem(leaf))
    at = str(int((NOW + timedelta(days=1)).timestamp()))
    done = subprocess.run(
        ["openssl", "verify", "-attime", at, "-purpose", "sslclient", "-x509_strict",
         "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "issuing.pem"),
         str(tmp_path / "leaf.pem")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout
