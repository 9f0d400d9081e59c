"""The user's hardware token over PKCS#11 (python-pkcs11): keys that never leave it.

What the manual's "CS CryptoPlus" and "Správce karty" do: generate an EC P-256
key pair on the token (private key sensitive and non-extractable), build a
PKCS#10 request whose signature is made on the token, import the issued
certificate and its chain, sign the portal's login challenge, change the PIN
(R6). Works with any PKCS#11 module; SoftHSM2 in tests.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pkcs11
from asn1crypto import csr as acsr
from asn1crypto import keys as akeys
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature, encode_named_curve_parameters

from adapters.compat.python_pkcs11 import initialise_for_threads
from ca_core.errors import NotReady

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class TokenError(NotReady):
    """The token cannot do what was asked (not plugged in, a wrong PIN, no such key)."""

    code = "token-error"


@dataclass(frozen=True)
class TokenInfo:
    slot: int
    label: str
    serial: str
    manufacturer: str
    model: str


@dataclass(frozen=True)
class TokenObject:
    kind: str  # private-key | public-key | certificate
    label: str
    id_hex: str
    extractable: bool | None = None
    sensitive: bool | None = None


def _library(module: str) -> Any:
    try:  # with OS locking, as the CA's key store loads it (adapters/compat/python_pkcs11.py)
        initialise_for_threads(module)
        return pkcs11.lib(module)
    except (RuntimeError, OSError) as exc:
        raise TokenError(f"cannot load the PKCS#11 module {module}: {exc}",
                         code="token-module") from None


def list_tokens(module: str = DEFAULT_MODULE) -> list[TokenInfo]:
    found = []
    for slot in _library(module).get_slots(token_present=True):
        token = slot.get_token()
        if not token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED:
            continue
        found.append(TokenInfo(slot.slot_id, token.label.strip(), token.serial.decode().strip()
                               if isinstance(token.serial, bytes) else str(token.serial).strip(),
                               token.manufacturer_id.strip(), token.model.strip()))
    return found


class Token:
    """One token, opened with the user PIN for each operation."""

    def __init__(self, label: str, pin: str, module: str = DEFAULT_MODULE) -> None:
        self.module, self.label, self.pin = module, label, pin

    def _token(self) -> Any:
        try:
            return _library(self.module).get_token(token_label=self.label)
        except pkcs11.NoSuchToken:
            raise TokenError(f"no token labelled {self.label!r}", code="token-not-found") from None
        except pkcs11.MultipleTokensReturned:
            raise TokenError(f"more than one token labelled {self.label!r}",
                             code="token-ambiguous") from None

    @contextmanager
    def session(self, rw: bool = False) -> Iterator[Any]:
        try:
            with self._token().open(user_pin=self.pin, rw=rw) as session:
                yield session
        except pkcs11.PinIncorrect:
            raise TokenError("the PIN is wrong", code="token-pin-wrong") from None
        except pkcs11.PinLocked:
            raise TokenError("the PIN is locked", code="token-pin-locked") from None

    # keys -------------------------------------------------------------------------
    def generate_key(self, label: str) -> str:
        """An EC P-256 key pair on the token; the private key is sensitive and cannot be
        extracted. Returns the key id (hex), shared by the key pair and, later, its certificate."""
        key_id = os.urandom(8)
        with self.session(rw=True) as session:
            if list(session.get_objects({Attribute.LABEL: label,
                                         Attribute.CLASS: ObjectClass.PRIVATE_KEY})):
                raise TokenError(f"the token already has a key labelled {label!r}",
                                 code="token-key-exists")
            params = session.create_domain_parameters(KeyType.EC, {
                Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
            params.generate_keypair(store=True, label=label, id=key_id,
                                    private_template={Attribute.SENSITIVE: True,
                                                      Attribute.EXTRACTABLE: False,
                                                      Attribute.SIGN: True},
                                    public_template={Attribute.VERIFY: True})
        return key_id.hex()

    def _private(self, session: Any, label: str) -> Any:
        try:
            return session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        except pkcs11.NoSuchKey:
            raise TokenError(f"no private key labelled {label!r} on the token",
                             code="token-key-missing") from None

    def sign(self, label: str, data: bytes) -> bytes:
        """ECDSA with SHA-256 over ``data`` on the token (hashed here: CKM_ECDSA is what every
        token has); DER-encoded as X.509 and the portal expect it."""
        digest = hashlib.sha256(data).digest()
        with self.session() as session:
            raw = self._private(session, label).sign(digest, mechanism=Mechanism.ECDSA)
        return bytes(encode_ecdsa_signature(raw))

    def public_key_der(self, label: str) -> bytes:
        with self.session() as session:
            public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
            return bytes(encode_ec_public_key(public))

    def csr(self, label: str, common_name: str) -> str:
        """A PKCS#10 request for the token key, its signature made on the token (PEM)."""
        info = acsr.CertificationRequestInfo({
            "version": "v1",
            "subject": ax509.Name.build({"common_name": common_name}),
            "subject_pk_info": akeys.PublicKeyInfo.load(self.public_key_der(label)),
            "attributes": [],
        })
        request = acsr.CertificationRequest({
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": self.sign(label, info.dump()),
        })
        return x509.load_der_x509_csr(request.dump()).public_bytes(Encoding.PEM).decode()

    # certificates -----------------------------------------------------------------------
    def import_certificates(self, label: str, pems: list[str]) -> None:
        """The user's certificate (first, given the key's label and id) and its chain."""
        with self.session(rw=True) as session:
            key_id = None
            try:
                key_id = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label).id
            except pkcs11.NoSuchKey:
                pass
            for i, pem in enumerate(pems):
                cert = x509.load_pem_x509_certificate(pem.encode())
                object_label = label if i == 0 else f"{label}-chain-{i}"
                for old in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                                Attribute.LABEL: object_label}):
                    old.destroy()
                template = {
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
                    Attribute.TOKEN: True, Attribute.LABEL: object_label,
                    Attribute.SUBJECT: cert.subject.public_bytes(),
                    Attribute.ISSUER: cert.issuer.public_bytes(),
                    Attribute.VALUE: cert.public_bytes(Encoding.DER),
                }
                if i == 0 and key_id is not None:
                    template[Attribute.ID] = key_id
                session.create_object(template)

    def certificates(self) -> list[tuple[str, x509.Certificate]]:
        with self.session() as session:
            return [(str(obj[Attribute.LABEL]),
                     x509.load_der_x509_certificate(bytes(obj[Attribute.VALUE])))
                    for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})]

    def objects(self) -> list[TokenObject]:
        found = []
        with self.session() as session:
            for kind, cls in (("private-key", ObjectClass.PRIVATE_KEY),
                              ("public-key", ObjectClass.PUBLIC_KEY),
                              ("certificate", ObjectClass.CERTIFICATE)):
                for obj in session.get_objects({Attribute.CLASS: cls}):
                    extractable = sensitive = None
                    if cls == ObjectClass.PRIVATE_KEY:
                        extractable = bool(obj[Attribute.EXTRACTABLE])
                        sensitive = bool(obj[Attribute.SENSITIVE])
                    try:
                        id_hex = bytes(obj[Attribute.ID]).hex()
                    except (pkcs11.AttributeTypeInvalid, KeyError):
                        id_hex = ""
                    found.append(TokenObject(kind, str(obj[Attribute.LABEL]), id_hex,
                                             extractable, sensitive))
        return found

    # R6 ------------------------------------------------------------------------------
    def change_pin(self, old_pin: str, new_pin: str) -> None:
        """R6: the PIN changes on the token only; nothing is sent to the service."""
        if len(new_pin) < 4:
            raise TokenError("the new PIN must have at least 4 characters",
                             code="token-pin-too-short")
        self.pin = old_pin
        with self.session(rw=True) as session:
            try:
                session.set_pin(old_pin, new_pin)
            except pkcs11.PinIncorrect:
                raise TokenError("the old PIN is wrong", code="token-pin-wrong") from None
            except (pkcs11.PinLenRange, pkcs11.PinInvalid):
                raise TokenError("the token does not accept this new PIN",
                                 code="token-pin-invalid") from None
        self.pin = new_pin
