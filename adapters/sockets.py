"""Listening sockets for the HTTP roles: bound here from ``host:port``, or inherited.

``fd:N`` in a ``*_LISTEN`` setting means "file descriptor N is a socket that is already
bound and listening" — what systemd socket activation hands a service, and what a test
harness hands a server so that no port has to be guessed and raced for.
"""

from __future__ import annotations

import socket


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
