"""PartnerAccount aggregate: who a user is, which modules they belong to (R1), their OTPs and requests."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from ca_core.errors import DomainError, Forbidden
from ca_core.eventmodel import Aggregate


class ModuleRefused(Forbidden):
    """R1: the user is not registered in the module asked through."""

    code = "module-not-registered"


#: a user identifier: ASCII letters, digits, ".", "_", "-", 1 to 64 characters — so a
#: certificate's CN cannot render like another partner's (no look-alike letters or digits,
#: no invisible characters, no markup)
USER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
#: an e-mail address as the notifier can send to: one "@", no spaces or control characters
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,253}", re.ASCII)


def check_user_id(user_id: str) -> None:
    """One rule for every door (API, pages, CLI, the CA's own check before signing)."""
    if not USER_ID.fullmatch(user_id):
        raise DomainError(f"the user identifier {user_id!r} is not valid: 1 to 64 of the "
                          "ASCII letters A-Z, a-z, digits 0-9, '.', '_' and '-'",
                          code="user-id-invalid")


def check_email(email: str) -> None:
    if len(email) > 254 or not EMAIL.fullmatch(email):
        raise DomainError(f"the e-mail address {email!r} is not valid", code="email-invalid")


class PartnerAccount(Aggregate):
    """A portal user. Its id is derived from the user identifier."""

    class PartnerRegistered(Aggregate.Created):
        user_id: str
        email: str
        language: str
        modules: list[str]
        registered_by: str = ""  # the acting administrator (empty in events before it existed)

    class ModuleGranted(Aggregate.Event):
        module: str
        granted_by: str = ""

    class OtpAssigned(Aggregate.Event):
        module: str
        otp_id: UUID

    class RequestFiled(Aggregate.Event):
        request_id: UUID

    class SessionsEnded(Aggregate.Event):
        """Every session of the user opened until now ends (ops, or the user everywhere)."""

        ended_by: str

    @staticmethod
    def create_id(*_: Any, user_id: str = "", **__: Any) -> UUID:
        return PartnerAccount.id_for(user_id)

    @staticmethod
    def id_for(user_id: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"partner-ca:partner:{user_id}")

    @event(PartnerRegistered)
    def __init__(
        self, user_id: str, email: str, language: str, modules: list[str], timestamp: datetime,
        registered_by: str = "",
    ) -> None:
        self.user_id = user_id
        self.email = email
        self.language = language
        self.modules = list(modules)
        self.otps: dict[str, UUID] = {}
        self.otp_history: list[UUID] = []
        self.requests: list[UUID] = []
        self.sessions_ended_at: datetime | None = None

    def check_module_registered(self, module: str) -> None:
        """R1: asking through a module the user is not registered in is refused."""
        if module not in self.modules:
            raise ModuleRefused(
                f"user {self.user_id} is not registered in module {module}; no OTP was generated"
            )

    def grant_module(self, module: str, now: datetime, granted_by: str = "") -> None:
        if module not in self.modules:
            self._module_granted(module=module, timestamp=now, granted_by=granted_by)

    @event(ModuleGranted)
    def _module_granted(self, module: str, timestamp: datetime, granted_by: str) -> None:
        self.modules.append(module)

    @event(OtpAssigned)
    def assign_otp(self, module: str, otp_id: UUID, timestamp: datetime) -> None:
        self.otps[module] = otp_id
        self.otp_history.append(otp_id)

    @event(SessionsEnded)
    def end_sessions(self, ended_by: str, timestamp: datetime) -> None:
        self.sessions_ended_at = timestamp

    @event(RequestFiled)
    def file_request(self, request_id: UUID, timestamp: datetime) -> None:
        self.requests.append(request_id)
