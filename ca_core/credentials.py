"""Secrets the portal hands out or receives: OTPs and revocation passwords.

Only hashes are ever stored. OTPs carry 80 random bits, so a salted SHA-256 is
enough; revocation passwords are chosen by people, so they get scrypt (R3).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

OTP_BITS = 80
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def new_otp() -> str:
    """A fresh OTP: 80 bits from the OS CSPRNG, as four groups of base32 (R1)."""
    raw = base64.b32encode(secrets.token_bytes(OTP_BITS // 8)).decode()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _normalise_otp(otp: str) -> str:
    return "".join(otp.split()).replace("-", "").upper()


def hash_otp(otp: str) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.sha256((salt + _normalise_otp(otp)).encode()).hexdigest()
    return f"sha256${salt}${digest}"


def verify_otp(otp: str, stored: str) -> bool:
    _, salt, digest = stored.split("$")
    candidate = hashlib.sha256((salt + _normalise_otp(otp)).encode()).hexdigest()
    return hmac.compare_digest(candidate, digest)


def hash_password(password: str) -> str:
    """Salted scrypt hash of a revocation password (memory-hard, R3)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(candidate.hex(), digest)


def keyed_token(key: bytes, *parts: str) -> str:
    """A token derived from a server secret, so nothing secret needs to be stored.

    Used for pickup links: the link's token is recomputed when the email is sent
    and when the link is followed.
    """
    mac = hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")


def same_token(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
