"""CA keys on a SoftHSM2 token over PKCS#11 (issue 17, part 1): generated inside the token,
sensitive and never extractable; certificates, CRLs and OCSP responses signed through the
token and judged by openssl and pkilint; nothing of the keys in the data directory."""

from __future__ import annotations

import logging
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from adapters.ca.hsm import Pkcs11KeyStore, TokenKey
from adapters.ca.keystore import KeyStoreError
from adapters.compat import python_pkcs11
from adapters.entrypoints.bootstrap import PartnerCa
from adapters.entrypoints.ca_wiring import ca_publishing
from ca_core.certificate import serial_hex
from ca_core.crl import RevokedEntry
from ca_core.hierarchy import ISSUING_KEY, ROOT_KEY
from ca_core.ocsp import Answer, sign_response
from projections.ocsp import CA_PREFIX
from tests.conftest import SoftToken
from tests.integration.test_crl import openssl_verify
from tests.integration.test_pkilint import lint
from tests.support import enroll, make_system, register


def _system(tmp_path: Path, token: SoftToken) -> PartnerCa:
    return make_system(tmp_path / "data", key_store="pkcs11", hsm_module=token.module,
                       hsm_token_label=token.label, hsm_pin=token.pin)


def test_the_whole_story_signed_on_the_token(tmp_path: Path, soft_token: SoftToken) -> None:
    system = _system(tmp_path, soft_token)
    assert isinstance(system.ca.keys, Pkcs11KeyStore)
    register(system)
    good, bad = enroll(system), enroll(system)
    system.ca.revoke(bad.picked.serial, "keyCompromise", operator="ops-anna")
    revoked = system.ca.certificate(bad.picked.serial)
    crl = system.ca.crls.publish_crl([RevokedEntry(bad.picked.serial, revoked.revoked_at
                                              or revoked.not_before, "keyCompromise")], 1)
    authority = system.ca.authority()
    assert authority.issuing_key_id.startswith("pkcs11:")
    (tmp_path / "root.pem").write_text(authority.root_certificate_pem)
    (tmp_path / "issuing.pem").write_text(authority.issuing_certificate_pem)
    (tmp_path / "crl.der").write_bytes(crl)
    at = int(system.clock.now().timestamp())
    # openssl: the chain holds, the CRL says which one is revoked
    assert openssl_verify(tmp_path, good.picked.certificate_pem, at).returncode == 0
    refused = openssl_verify(tmp_path, bad.picked.certificate_pem, at)
    assert refused.returncode != 0 and "revoked" in refused.stdout + refused.stderr
    # pkilint on what the token signed
    for name, pem in (("leaf.pem", good.picked.certificate_pem),
                      ("issuing.pem", authority.issuing_certificate_pem)):
        (tmp_path / name).write_text(pem)
        assert lint("lint_pkix_cert", "lint", str(tmp_path / name)) == ""
    # an OCSP response signed by the delegated signer, whose key is on the token too
    signer = system.ca.ocsp.signer()
    assert isinstance(signer.key, TokenKey)
    system.close()


def test_keys_on_the_token_are_sensitive_never_extractable_and_absent_from_disk(
        tmp_path: Path, soft_token: SoftToken) -> None:
    system = _system(tmp_path, soft_token)
    system.ca.ocsp.signer()
    system.ca.hierarchy.rollover()  # the next issuing key is made on the token too
    system.ca.ocsp.signers()
    keys = system.ca.keys
    assert isinstance(keys, Pkcs11KeyStore)
    authority = system.ca.authority()
    assert authority.issuing[1].key_name == "issuing-g1"
    for name in (ROOT_KEY, ISSUING_KEY, "issuing-g1", authority.issuing[0].ocsp_signer_key,
                 authority.issuing[1].ocsp_signer_key):
        assert keys.attributes(name) == {"sensitive": True, "extractable": False,
                                         "never_extractable": True}, name
        key = keys.load(name)
        with pytest.raises(TypeError, match="cannot be exported"):
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    data = tmp_path / "data"
    assert not (data / "keys").exists() or not any((data / "keys").iterdir())
    for path in data.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    system.close()


def test_openssl_checks_an_ocsp_response_the_token_signed(tmp_path: Path,
                                                         soft_token: SoftToken) -> None:
    system = _system(tmp_path, soft_token)
    register(system)
    me = enroll(system)
    authority = system.ca.authority()
    issuer = x509.load_pem_x509_certificate(authority.issuing_certificate_pem.encode())
    cert = x509.load_pem_x509_certificate(me.picked.certificate_pem.encode())
    signer = system.ca.ocsp.signer()
    der = sign_response(signer, Answer(me.picked.serial, "good"), "sha1", system.clock.now(),
                        timedelta(days=1))
    response = ocsp.load_der_ocsp_response(der)
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    (tmp_path / "resp.der").write_bytes(der)
    (tmp_path / "issuing.pem").write_text(authority.issuing_certificate_pem)
    (tmp_path / "chain.pem").write_text(authority.issuing_certificate_pem
                                        + authority.root_certificate_pem)
    (tmp_path / "leaf.pem").write_text(me.picked.certificate_pem)
    done = subprocess.run(
        ["openssl", "ocsp", "-respin", str(tmp_path / "resp.der"), "-issuer",
         str(tmp_path / "issuing.pem"), "-cert", str(tmp_path / "leaf.pem"), "-CAfile",
         str(tmp_path / "chain.pem"), "-attime", str(int(system.clock.now().timestamp())),
         "-validity_period", "31622400"],  # the test clock is in January
        capture_output=True, text=True)
    assert "Response verify OK" in done.stdout + done.stderr, done.stdout + done.stderr
    assert f"{tmp_path / 'leaf.pem'}: good" in done.stdout
    assert cert.issuer == issuer.subject
    system.close()


def test_a_wrong_pin_and_a_missing_token_are_one_line_errors(soft_token: SoftToken) -> None:
    with pytest.raises(KeyStoreError) as wrong:
        Pkcs11KeyStore(soft_token.module, soft_token.label, "000000")
    assert wrong.value.code == "hsm-pin-wrong" and "000000" not in str(wrong.value)
    with pytest.raises(KeyStoreError) as missing:
        Pkcs11KeyStore(soft_token.module, "no-such-token", soft_token.pin)
    assert missing.value.code == "hsm-token-missing"
    keys = Pkcs11KeyStore(soft_token.module, soft_token.label, soft_token.pin)
    with pytest.raises(KeyStoreError) as absent:
        keys.load("issuing")
    assert absent.value.code == "key-missing"


def test_threads_signing_at_once_on_the_token_all_succeed(soft_token: SoftToken) -> None:
    """python-pkcs11 initialises the library without OS locking: concurrent calls once
    failed with CKR_GENERAL_ERROR (bench/hsm_sign.py). The module now runs with OS locking
    and the pool's sessions sign at once (no process-wide lock around the calls)."""
    from concurrent.futures import ThreadPoolExecutor

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    keys = Pkcs11KeyStore(soft_token.module, soft_token.label, soft_token.pin)
    key, _ = keys.generate("issuing", "secp256r1")

    def sign(i: int) -> bool:
        data = f"record {i}".encode()
        key.public_key().verify(key.sign(data, ec.ECDSA(hashes.SHA256())), data,
                                ec.ECDSA(hashes.SHA256()))
        return True

    assert keys.threaded  # no lock serialises the calls
    assert python_pkcs11.already_initialised(soft_token.module)  # ctypes reached that module
    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(sign, range(400)))
    assert keys._opened > 1  # several sessions were in use at once
    keys.close()


def test_each_kind_of_key_in_its_own_store(tmp_path: Path, soft_token: SoftToken) -> None:
    """Root and issuing keys on the token, the delegated OCSP signer and the audit key in
    files (PARTNER_CA_KEY_STORES)."""
    from adapters.audit.tree_heads import AUDIT_KEY, audit_key
    from adapters.ca.keystore import FileKeyStore, KeysByKind

    system = make_system(tmp_path / "data", key_store="file",
                         key_stores={"root": "pkcs11", "issuing": "pkcs11"},
                         hsm_module=soft_token.module, hsm_token_label=soft_token.label,
                         hsm_pin=soft_token.pin)
    keys = system.ca.keys
    assert isinstance(keys, KeysByKind)
    register(system)
    enroll(system)
    signer = system.ca.ocsp.signer()
    audit_key(keys, tmp_path / "audit.pub.pem")
    on_token, in_files = keys.stores["root"], keys.stores["ocsp"]
    assert isinstance(on_token, Pkcs11KeyStore) and isinstance(in_files, FileKeyStore)
    assert on_token.exists(ROOT_KEY) and on_token.exists(ISSUING_KEY)
    assert not on_token.exists(AUDIT_KEY) and not on_token.exists(signer_name := system.ca
                                                                  .authority().ocsp_signer_key)
    files = sorted(p.name for p in (tmp_path / "data" / "keys").glob("*.key.pem"))
    assert files == sorted([f"{AUDIT_KEY}.key.pem", f"{signer_name}.key.pem"])
    assert not isinstance(signer.key, TokenKey)
    system.close()


def test_the_root_on_its_own_token_goes_offline_and_the_ca_runs_on(
        tmp_path: Path, soft_token: SoftToken, softhsm_pool: list[SoftToken],
        caplog: pytest.LogCaptureFixture) -> None:
    """The ceremony puts the root on its own token; unplugged, the CA role issues, revokes
    and publishes as before, only the root's answers about the issuing CA wait for it (a
    warning says until when the current ones hold) and a rollover is refused; plugged in
    again, `sign-root-answers` signs them for as long as asked."""
    root_token = softhsm_pool.pop()
    tokens = {"key_store": "pkcs11", "hsm_module": soft_token.module,
              "hsm_token_label": soft_token.label, "hsm_pin": soft_token.pin,
              "hsm_root_pin": root_token.pin}
    online = make_system(tmp_path / "data", hsm_root_token_label=root_token.label, **tokens)
    on_root = Pkcs11KeyStore(root_token.module, root_token.label, root_token.pin)
    on_issuing = Pkcs11KeyStore(soft_token.module, soft_token.label, soft_token.pin)
    assert on_root.exists(ROOT_KEY) and not on_root.exists(ISSUING_KEY)
    assert on_issuing.exists(ISSUING_KEY) and not on_issuing.exists(ROOT_KEY)
    authority = online.ca.authority()
    assert authority.root_key_id.startswith(f"pkcs11:{on_root.serial}:")
    assert authority.issuing_key_id.startswith(f"pkcs11:{on_issuing.serial}:")
    online.close()

    # the root token unplugged: its label names no token in the slot list
    offline = make_system(tmp_path / "data", initialise=False,
                          hsm_root_token_label="unplugged-root-token", **tokens)
    register(offline)
    me = enroll(offline)
    publishing = ca_publishing(offline.ca, offline.settings)
    with caplog.at_level(logging.WARNING, logger="partner_ca.publishing"):
        publishing.step()
    assert "the root key is not at hand (hsm-token-missing)" in caplog.text
    assert publishing.ocsp.store.get(me.picked.serial) is not None  # end entities: signed
    assert (tmp_path / "data" / "crl" / "issuing.crl").exists()
    with pytest.raises(KeyStoreError) as refused:
        offline.ca.hierarchy.rollover()
    assert refused.value.code == "hsm-token-missing"
    offline.close()

    plugged = make_system(tmp_path / "data", initialise=False,
                          hsm_root_token_label=root_token.label, **tokens)
    publishing = ca_publishing(plugged.ca, plugged.settings)
    issuing = x509.load_pem_x509_certificate(
        plugged.ca.authority().issuing_certificate_pem.encode())
    publishing.ocsp.projection.refresh_issuing_ca(
        serial_hex(issuing.serial_number), plugged.ca.ocsp.root, timedelta(days=90),
        force=True)
    row = publishing.ocsp.store.get(CA_PREFIX + serial_hex(issuing.serial_number))
    assert row is not None and row.next_update - row.this_update == timedelta(days=90)
    plugged.close()
