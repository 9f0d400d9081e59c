"""The domain's own errors. Each carries a stable ``code`` (used as the problem type later)."""

from __future__ import annotations


class DomainError(Exception):
    """A rule refused a command. ``code`` is stable; the message names what is wrong."""

    code = "domain-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class NotFound(DomainError):
    code = "not-found"
