"""Listening sockets for the HTTP roles: bound here from ``host:port``, or inherited.

``fd:N`` in a ``*_LISTEN`` setting means "file descriptor N is a socket that is already
bound and listening" — what systemd socket activation hands a service, and what a test
harness hands a server so that no port has to be guessed and raced for.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

log = logging.getLogger("partner_ca.serve")


def inherited(listen: str) -> bool:
    return listen.startswith("fd:")


def listening_socket(listen: str, reuse_port: bool = False) -> socket.socket:
    """The socket to serve ``listen`` on (``host:port`` or ``fd:N``)."""
    if inherited(listen):
        try:
            sock = socket.socket(fileno=int(listen[3:]))
        except (ValueError, OSError) as exc:
            raise ValueError(f"{listen!r} is not an inherited listening socket ({exc})") from None
        sock.setblocking(False)
        return sock
    host, _, port = listen.rpartition(":")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host.strip("[]") or "127.0.0.1", int(port)))
    sock.listen(2048)
    return sock


def shown(sock: socket.socket) -> str:
    """host:port the socket listens on (for the log)."""
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def serve_until(server: Any, sock: socket.socket, stop: threading.Event, name: str,
                what: str) -> None:
    """Run a uvicorn ``server`` on ``sock`` in a thread of its own until ``stop``; then let
    it finish its requests and close the socket (the body of a role's HTTP thread)."""
    web = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name,
                           daemon=True)
    web.start()
    log.info("%s on http://%s", what, shown(sock))
    stop.wait()
    server.should_exit = True
    web.join(timeout=10)
    sock.close()
