"""API tokens for module administrators and operators, with roles per module.

Tokens live in ``<data_dir>/ops-tokens.json`` as SHA-256 hashes (the token is shown
once, by ``partner-ca ops token``). Roles: ``admin:<MODULE>`` registers users in
that module and issues their OTPs there (R1: an administrator of another module
is refused); ``operator`` revokes (R10), reads status, and may act in every module.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ca_core.errors import DomainError, Forbidden


class OpsRefused(Forbidden):
    code = "ops-forbidden"


@dataclass(frozen=True)
class OpsIdentity:
    name: str
    roles: frozenset[str]

    def check_module(self, module: str) -> None:
        if "operator" not in self.roles and f"admin:{module}" not in self.roles:
            raise OpsRefused(f"{self.name} is not an administrator of module {module}")

    def check_operator(self) -> None:
        if "operator" not in self.roles:
            raise OpsRefused(f"{self.name} is not an operator")


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

    def create(self, name: str, roles: list[str]) -> str:
        """A new token for ``name`` with ``roles``; returns it (only its hash is kept)."""
        for role in roles:
            if role != "operator" and not (role.startswith("admin:") and len(role) > 6):
                raise DomainError(f"unknown role {role!r} (admin:<MODULE> or operator)",
                                  code="role-unknown")
        token = "pca_" + secrets.token_urlsafe(32)
        entries = [e for e in self._entries() if e.get("name") != name]
        entries.append({"name": name, "sha256": _digest(token), "roles": sorted(roles)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(entries, out, indent=2)
        os.replace(tmp, self.path)
        return token

    def authenticate(self, token: str) -> OpsIdentity | None:
        digest = _digest(token)
        for entry in self._entries():
            if hmac.compare_digest(str(entry.get("sha256", "")), digest):
                roles = entry.get("roles", [])
                return OpsIdentity(str(entry["name"]),
                                   frozenset(str(r) for r in roles)
                                   if isinstance(roles, list) else frozenset())
        return None
