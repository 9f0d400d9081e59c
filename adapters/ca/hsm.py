"""CA keys in a hardware security module over PKCS#11 (SoftHSM2 in tests), behind the same
``KeyStore`` port as the key files.

Keys are generated inside the token — sensitive, never extractable — and labelled with the
key's name (``root``, ``issuing``, ``ocsp-<serial>``, ``audit``). ``load`` returns a
``TokenKey``: an object implementing cryptography's ``EllipticCurvePrivateKey`` interface
whose ``sign`` hashes here and has the token sign the digest (CKM_ECDSA), so that
certificates, CRLs, OCSP responses and tree heads are built exactly as with a key file
(cryptography accepts such objects in its builders, see pyca/cryptography#11616).

Sessions are pooled and the token is logged in once; threads sign at once, each on a
session of its own. python-pkcs11 0.10 initialises the library with ``C_Initialize(NULL)``,
which by the PKCS#11 standard promises the library that no two threads call it at once
(SoftHSM2 then takes no locks of its own; concurrent calls failed with CKR_GENERAL_ERROR —
bench/hsm_sign.py found it), so the module is initialised again with OS locking as it is
loaded (adapters/compat/python_pkcs11.py). Should that not be possible (the module was
loaded by something else first), calls are serialised by one lock per process instead.
Measured rates are in docs/benchmarks.md. The PIN
comes from settings (a file, or the environment), never the command line; it is never
logged and never part of an error.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import pkcs11
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    encode_dss_signature,
)
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from adapters.ca.keystore import KeyStoreError
from adapters.compat.python_pkcs11 import initialise_for_threads
from ca_core.signatures import SigningKey

CURVES = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1()}
#: every call into a PKCS#11 library without OS locking holds it (see the module text)
_LIBRARY = threading.RLock()


class Pkcs11KeyStore:
    """CA keys on one token (module path, token label, user PIN)."""

    def __init__(self, module: str, token_label: str, pin: str, sessions: int = 4) -> None:
        try:
            threaded = initialise_for_threads(module)
            library = pkcs11.lib(module)
        except (RuntimeError, OSError) as exc:
            raise KeyStoreError(f"cannot load the PKCS#11 module {module}: {exc}",
                                code="hsm-module") from None
        try:
            self.token = library.get_token(token_label=token_label)
        except pkcs11.NoSuchToken:
            raise KeyStoreError(f"no token labelled {token_label!r} in {module}",
                                code="hsm-token-missing") from None
        except pkcs11.MultipleTokensReturned:
            raise KeyStoreError(f"more than one token labelled {token_label!r}",
                                code="hsm-token-ambiguous") from None
        self.serial = (self.token.serial.decode() if isinstance(self.token.serial, bytes)
                       else str(self.token.serial)).strip()
        self._pin = pin
        self._size = sessions
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._opened = 0
        self._lock = threading.Lock()
        #: held around every library call only where the module could not get OS locking
        self.threaded = threaded
        self._calls: AbstractContextManager[Any] = nullcontext() if threaded else _LIBRARY
        self._handles: dict[tuple[int, str], Any] = {}  # (session, key name) -> private key
        with self.session():  # a wrong PIN ends here, before anything is served
            pass

    # sessions -----------------------------------------------------------------------
    def _open(self) -> Any:
        try:
            if self._opened == 0:  # the first session logs the application in
                try:
                    found = self.token.open(user_pin=self._pin, rw=True)
                except pkcs11.UserAlreadyLoggedIn:  # another store of this process did
                    found = self.token.open(rw=True)
            else:
                found = self.token.open(rw=True)
        except pkcs11.PinIncorrect:
            raise KeyStoreError(f"the PIN of token {self.token.label.strip()!r} is wrong",
                                code="hsm-pin-wrong") from None
        except pkcs11.PinLocked:
            raise KeyStoreError(f"the PIN of token {self.token.label.strip()!r} is locked",
                                code="hsm-pin-locked") from None
        self._opened += 1
        return found

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A session of the pool (opened on demand, up to ``sessions``; then waited for)."""
        try:
            current = self._pool.get_nowait()
        except queue.Empty:
            with self._lock, self._calls:
                current = self._open() if self._opened < self._size else None
            if current is None:
                current = self._pool.get()
        try:
            with self._calls:
                yield current
        finally:
            self._pool.put(current)

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return

    # the KeyStore port ----------------------------------------------------------------
    def generate(self, name: str, curve: str) -> tuple[SigningKey, str]:
        """A new key pair on the token: private half sensitive, not extractable, sign-only."""
        key_id = os.urandom(8)
        with self.session() as session:
            if self._find(session, name, ObjectClass.PRIVATE_KEY) is not None:
                raise FileExistsError(f"the token already has a key {name!r}")
            params = session.create_domain_parameters(KeyType.EC, {
                Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True)
            public, _ = params.generate_keypair(
                store=True, label=name, id=key_id,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                                  Attribute.SIGN: True, Attribute.PRIVATE: True},
                public_template={Attribute.VERIFY: True})
            key = TokenKey(self, name, _public(public))
        return key, f"pkcs11:{self.serial}:{key_id.hex()}"

    def save(self, name: str, key: SigningKey) -> str:
        raise KeyStoreError(f"key {name!r}: keys are generated on the token, never imported",
                            code="hsm-import-refused")

    def load(self, name: str) -> SigningKey:
        with self.session() as session:
            public = self._find(session, name, ObjectClass.PUBLIC_KEY)
            if public is None or self._find(session, name, ObjectClass.PRIVATE_KEY) is None:
                raise KeyStoreError(f"no key {name!r} on token {self.token.label.strip()!r}",
                                    code="key-missing")
            return TokenKey(self, name, _public(public))

    def exists(self, name: str) -> bool:
        with self.session() as session:
            return self._find(session, name, ObjectClass.PRIVATE_KEY) is not None

    def attributes(self, name: str) -> dict[str, bool]:
        """The private key's SENSITIVE, EXTRACTABLE, NEVER_EXTRACTABLE (checked by tests)."""
        with self.session() as session:
            key = self._find(session, name, ObjectClass.PRIVATE_KEY)
            if key is None:
                raise KeyStoreError(f"no key {name!r}", code="key-missing")
            return {"sensitive": bool(key[Attribute.SENSITIVE]),
                    "extractable": bool(key[Attribute.EXTRACTABLE]),
                    "never_extractable": bool(key[Attribute.NEVER_EXTRACTABLE])}

    @staticmethod
    def _find(session: Any, name: str, kind: ObjectClass) -> Any | None:
        try:
            return session.get_key(object_class=kind, label=name)
        except pkcs11.NoSuchKey:
            return None

    def _sign_digest(self, name: str, digest: bytes) -> bytes:
        with self.session() as session:
            key = self._handles.get((id(session), name))
            if key is None:  # looked up once per session (C_FindObjects costs a third)
                key = self._find(session, name, ObjectClass.PRIVATE_KEY)
                if key is None:
                    raise KeyStoreError(f"no key {name!r} on the token", code="key-missing")
                self._handles[(id(session), name)] = key
            raw = key.sign(digest, mechanism=Mechanism.ECDSA)
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                    int.from_bytes(raw[half:], "big"))


def _public(key: Any) -> ec.EllipticCurvePublicKey:
    loaded = serialization.load_der_public_key(encode_ec_public_key(key))
    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    return loaded


class TokenKey(ec.EllipticCurvePrivateKey):
    """A private key that stays on the token: cryptography's builders call ``sign``, which
    hashes here and has the token sign the digest. Nothing else of the private key exists."""

    def __init__(self, store: Pkcs11KeyStore, name: str,
                 public: ec.EllipticCurvePublicKey) -> None:
        self._store, self.name, self._public = store, name, public

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        algorithm = signature_algorithm.algorithm
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("the token signs ECDSA only")
        if isinstance(algorithm, Prehashed):
            digest = data
        else:
            assert isinstance(algorithm, hashes.HashAlgorithm)
            digest = hashlib.new(algorithm.name, data).digest()
        return self._store._sign_digest(self.name, digest)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TypeError("a CA key on the token signs; it does no key exchange")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise TypeError(f"key {self.name!r} is on the token: it cannot be exported")

    def private_bytes(self, encoding: serialization.Encoding,
                      format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        raise TypeError(f"key {self.name!r} is on the token: it cannot be exported")

    def __copy__(self) -> TokenKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenKey:
        return self
