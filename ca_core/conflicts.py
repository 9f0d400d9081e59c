"""A command that lost a race to another process (or thread) on the same aggregate is run
again on the state as it now is, so the caller gets what the winner left: a second pickup
is "already picked up", a second revocation "already revoked" — and a wrong OTP or
revocation password guessed at the same moment as others is still counted, each one
(issue 26, item 12). The store's optimistic concurrency (eventsourcing's IntegrityError on
an aggregate version recorded twice) says a race was lost; nothing was written by the
loser."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from eventsourcing.persistence import IntegrityError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

#: How often a command is tried again when another process recorded first.
CONFLICT_ATTEMPTS = 30

F = TypeVar("F", bound=Callable[..., Any])


def on_conflict() -> Retrying:
    """Retries for a command another process recorded first: the state is read again each
    time, after a short random pause so colliding processes drift apart."""
    return Retrying(retry=retry_if_exception_type(IntegrityError),
                    stop=stop_after_attempt(CONFLICT_ATTEMPTS),
                    wait=wait_random_exponential(multiplier=0.005, max=0.15), reraise=True)


def retried_on_conflict(command: F) -> F:
    """Run ``command`` again (from the start: it reads the aggregates afresh) when the store
    refuses its events because another caller recorded first."""
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        return on_conflict()(command, *args, **kwargs)
    return cast(F, run)
