"""The OTP login's refusal floor, for the API and the pages alike (one place).

A registered user's wrong OTP records an attempt (a write) and an unknown id has nothing to
record, so the answer's time would tell them apart. A refusal is therefore answered no
sooner than ``floor`` seconds after the call began, and what is raised after the wait is a
new exception with the same class, text and code: the refused call's traceback — and the
aggregates its frames held, more for a known user than for an unknown one — are released
before the wait, not while the answer is written (issue 26, item 10)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from ca_core.errors import DomainError

T = TypeVar("T")


def bare(exc: DomainError) -> DomainError:
    """The same refusal without the traceback that raised it."""
    try:
        fresh = type(exc)(str(exc), code=exc.code)
    except TypeError:  # a refusal class with another constructor
        fresh = DomainError(str(exc), code=exc.code)
    return fresh


async def no_sooner_than(began: float, floor: float, refusal: DomainError) -> DomainError:
    """Wait until ``floor`` seconds after ``began``; returns the refusal to raise or show."""
    await asyncio.sleep(max(0.0, began + floor - time.monotonic()))
    return refusal


async def floored_login(login: Callable[[], T], floor: float,
                        began: float | None = None) -> T:
    """``login()`` in a worker thread; a refusal raised no sooner than ``floor`` seconds after
    ``began`` (default: now)."""
    began = time.monotonic() if began is None else began
    refusal: DomainError | None = None
    try:
        return await run_in_threadpool(login)
    except DomainError as exc:
        refusal = bare(exc)
    raise await no_sooner_than(began, floor, refusal)
