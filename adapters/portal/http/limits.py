"""The per-address attempt limit on the login and pickup-link calls (pages and API alike)."""

from __future__ import annotations

import threading
from collections import defaultdict, deque

from starlette.requests import Request

from adapters.portal.http.sessions import ProxyTrust
from adapters.storage.attempts import Attempts
from ca_core.clock import Clock, SystemClock
from ca_core.errors import TooManyAttempts

#: attempts per client address on the login and pickup-link calls, per sliding window (s)
ATTEMPTS_PER_ADDRESS, ATTEMPTS_WINDOW = 20, 60.0


class AttemptLimiter:
    """At most ``limit`` attempts per key in a sliding ``window`` (seconds), in this process's
    memory (tests, and a single process without a shared table); time from ``clock``. The
    shared ones (``Attempts``) are in adapters/storage/attempts.py."""

    def __init__(self, limit: int, window: float, clock: Clock | None = None) -> None:
        self.limit, self.window = limit, window
        self.clock = clock or SystemClock()
        self.attempts: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self.clock.now().timestamp()
        with self.lock:
            seen = self.attempts[key]
            while seen and now - seen[0] > self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                return False
            seen.append(now)
            return True


class AddressLimit:
    """The limit applied to a request's real client address (``ProxyTrust``)."""

    def __init__(self, trust: ProxyTrust, attempts: Attempts) -> None:
        self.trust, self.attempts = trust, attempts

    def check(self, request: Request) -> None:
        if not self.attempts.allow(self.trust.client_address(request)):
            raise TooManyAttempts("too many attempts from this address; wait a minute")
