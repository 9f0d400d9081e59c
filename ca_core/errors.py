"""The domain's own errors. Each carries a stable ``code`` (the problem type's last word) and,
on its class, the HTTP status that problem type is served with (RFC 9457).

The kinds below say *why* something is refused; a rule's error class derives from the kind
it is, so the portal API never keeps a table of codes: ``exc.http_status`` is the answer.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """A rule refused a command. ``code`` is stable; the message names what is wrong."""

    code = "domain-error"
    #: the status of this problem type over HTTP; 422 = the request was understood, a rule said no
    http_status: ClassVar[int] = 422

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class NotAuthenticated(DomainError):
    """Who is asking is not established (no, a wrong or an expired credential)."""

    code = "not-authenticated"
    http_status = 401


class Forbidden(DomainError):
    """Who is asking is known and may not do this (or this certificate may not log in)."""

    code = "forbidden"
    http_status = 403


class NotFound(DomainError):
    code = "not-found"
    http_status = 404


class Conflict(DomainError):
    """The thing is not in the state the command needs (already used, not ready, exists)."""

    code = "conflict"
    http_status = 409


class TooManyAttempts(DomainError):
    code = "too-many-attempts"
    http_status = 429


class NotReady(DomainError):
    """The service cannot answer yet (CA not initialised, store unreachable)."""

    code = "not-ready"
    http_status = 503
