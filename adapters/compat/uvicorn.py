"""Header and body deadlines for every HTTP listener: uvicorn (0.55) drops an idle keep-alive
connection but has no deadline for a request being *sent* — a client sending its header a
byte at a time, or announcing a body it never sends, holds its connection for ever
(issue 26, item 10). This subclass of uvicorn's httptools protocol arms one timer per
request: from the connection's (or the request's) first byte to the end of its headers, and
from there to the end of its body; when it fires, the connection is closed.

It relies on uvicorn's protocol callbacks (``connection_made``, ``on_message_begin``,
``on_headers_complete``, ``on_message_complete``, ``connection_lost``) and its ``loop`` and
``transport`` attributes; ``tests/unit/test_compat.py`` checks they are still there."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: seconds a client has to send a request's headers, and then its body
HEADER_SECONDS = 10.0
BODY_SECONDS = 30.0
#: connections (and tasks) one listener process holds; over it, new ones get 503
MAX_CONNECTIONS = 2000
#: seconds a listener waits on SIGTERM for requests in flight before it closes them
GRACEFUL_SECONDS = 5


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers and body."""

    header_seconds = HEADER_SECONDS
    body_seconds = BODY_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_seconds)  # a connection that sends nothing is no exception

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self.header_seconds)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_seconds)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def deadline_protocol(header_seconds: float, body_seconds: float) -> type[DeadlineProtocol]:
    return type("DeadlineProtocol", (DeadlineProtocol,), {
        "header_seconds": header_seconds, "body_seconds": body_seconds})


def bounded_config(app: Any, header_seconds: float = HEADER_SECONDS,
                   body_seconds: float = BODY_SECONDS, max_connections: int = MAX_CONNECTIONS,
                   **options: Any) -> uvicorn.Config:
    """A uvicorn configuration for one of our listeners: deadlines for headers and body, a
    bound on connections, the access log off (URLs carry pickup tokens)."""
    options.setdefault("log_level", "warning")
    options.setdefault("access_log", False)
    # a SIGTERM ends the listener within this many seconds, whatever its connections do
    options.setdefault("timeout_graceful_shutdown", GRACEFUL_SECONDS)
    return uvicorn.Config(app, http=deadline_protocol(header_seconds, body_seconds),
                          limit_concurrency=max_connections, **options)


def problems() -> list[str]:
    """What this module relies on in uvicorn and no longer finds (empty: all there)."""
    missing = [name for name in ("connection_made", "on_message_begin", "on_headers_complete",
                                 "on_message_complete", "connection_lost")
               if not callable(getattr(HttpToolsProtocol, name, None))]
    source = inspect.getsource(HttpToolsProtocol)
    missing += [attr for attr in ("self.loop", "self.transport") if attr not in source]
    return missing
