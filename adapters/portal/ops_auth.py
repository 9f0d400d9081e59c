"""API tokens for module administrators and operators, with roles per module.

Tokens live in ``<data_dir>/ops-tokens.json`` as SHA-256 hashes (the token is shown
once, by ``partner-ca ops token``). Roles: ``admin:<MODULE>`` registers users in
that module and issues their OTPs there (R1: an administrator of another module
is refused); ``operator`` revokes (R10), reads status, and may act in every module.

Every token carries an expiry (``partner-ca ops token --days``, default 90): an expired
token, or one from before expiries (no ``expires_at``), is refused. The ops pages do not
keep the token in the browser: logging in opens a short server-side session (recorded as a
``SessionOpened`` of kind ``ops``), bound to the token it was opened with, ended by logout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ca_core.errors import DomainError, Forbidden, NotFound
from ca_core.portal import Portal
from ca_core.request import CertificateRequest


class OpsRefused(Forbidden):
    code = "ops-forbidden"


#: how long a new ops token is valid unless said otherwise
TOKEN_DAYS = 90


@dataclass(frozen=True)
class OpsIdentity:
    name: str
    roles: frozenset[str]
    #: the first hex digits of the token's SHA-256 (binds an ops page session to its token)
    token_id: str = ""

    def check_module(self, module: str) -> None:
        if "operator" not in self.roles and f"admin:{module}" not in self.roles:
            raise OpsRefused(f"{self.name} is not an administrator of module {module}")

    def check_operator(self) -> None:
        if "operator" not in self.roles:
            raise OpsRefused(f"{self.name} is not an operator")

    def sees(self, modules: Iterable[str]) -> bool:
        """Whether anything in ``modules`` is this identity's to see."""
        return "operator" in self.roles or any(f"admin:{m}" in self.roles for m in modules)

    def check_sees_partner(self, portal: Portal, user_id: str) -> None:
        """A partner outside this administrator's modules answers exactly as an unknown user
        id: no answer tells which ids exist in other modules (issue 26, item 4)."""
        partner = portal.partner(user_id)  # NotFound: "no user …"
        if not self.sees(partner.modules):
            raise NotFound(f"no user {user_id}", code="user-unknown")

    def visible_request_for_serial(self, portal: Portal, serial: str) -> CertificateRequest:
        """The request behind a serial, answered as unknown outside this identity's modules."""
        request = portal.request_for_serial(serial)  # NotFound: "no certificate with …"
        if not self.sees([request.module]):
            raise NotFound(f"no certificate with serial {serial}", code="certificate-unknown")
        return request


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class OpsTokens:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _entries(self) -> list[dict[str, object]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return list(data) if isinstance(data, list) else []

    def create(self, name: str, roles: list[str], days: int = TOKEN_DAYS,
               now: datetime | None = None) -> str:
        """A new token for ``name`` with ``roles``, valid ``days``; returns it (only its hash
        is kept)."""
        for role in roles:
            if role != "operator" and not (role.startswith("admin:") and len(role) > 6):
                raise DomainError(f"unknown role {role!r} (admin:<MODULE> or operator)",
                                  code="role-unknown")
        if not 1 <= days <= 366:
            raise DomainError(f"an ops token is valid 1 to 366 days, not {days}",
                              code="token-days-invalid")
        token = "pca_" + secrets.token_urlsafe(32)
        expires = (now or datetime.now(UTC)) + timedelta(days=days)
        entries = [e for e in self._entries() if e.get("name") != name]
        entries.append({"name": name, "sha256": _digest(token), "roles": sorted(roles),
                        "expires_at": expires.isoformat(timespec="seconds")})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(entries, out, indent=2)
        os.replace(tmp, self.path)
        return token

    def authenticate(self, token: str, now: datetime | None = None) -> OpsIdentity | None:
        """The identity of a valid, unexpired token (None otherwise)."""
        digest = _digest(token)
        for entry in self._entries():
            if hmac.compare_digest(str(entry.get("sha256", "")), digest):
                return _identity(entry, now)
        return None

    def session_identity(self, name: str, token_id: str,
                         now: datetime | None = None) -> OpsIdentity | None:
        """The identity behind an ops page session: the token it was opened with must still
        be NAME's, unexpired (a replaced or expired token ends its sessions)."""
        for entry in self._entries():
            if entry.get("name") == name and hmac.compare_digest(
                    str(entry.get("sha256", ""))[:16], token_id):
                return _identity(entry, now)
        return None


def _identity(entry: dict[str, object], now: datetime | None) -> OpsIdentity | None:
    try:
        expires = datetime.fromisoformat(str(entry["expires_at"]))
    except (KeyError, ValueError):
        return None  # a token from before expiries: make a new one
    if (now or datetime.now(UTC)) >= expires:
        return None
    roles = entry.get("roles", [])
    return OpsIdentity(str(entry["name"]),
                       frozenset(str(r) for r in roles) if isinstance(roles, list)
                       else frozenset(), str(entry.get("sha256", ""))[:16])
