"""The portal's ASGI middleware: the body limit and the headers every answer carries."""

from __future__ import annotations

from typing import Any, ClassVar

from adapters.portal.http.problems import problem
from adapters.portal.http.sessions import ProxyTrust

MAX_BODY = 64 * 1024  # a CSR is about 1 KiB; nothing the portal takes is larger


class BodyLimit:
    """Bodies over ``limit`` bytes get 413, whether announced by Content-Length or streamed in
    chunks (the chunks are counted as they arrive)."""

    def __init__(self, app: Any, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = problem("body-too-large", f"request bodies are limited to {self.limit} bytes",
                            413)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await too_large(scope, receive, send)
            return
        # read the whole (small) body first, counting; the app then gets it replayed
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await too_large(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class SecurityHeaders:
    """The headers every answer carries. Nothing here is for a frame or a cache (tokens,
    certificates, pickup answers); HSTS when the client came over HTTPS (directly, or
    through a trusted proxy: ``ProxyTrust``)."""

    FIXED: ClassVar[list[tuple[bytes, bytes]]] = [(b"x-content-type-options", b"nosniff"),
             (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
             (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
             (b"cache-control", b"no-store")]
    HSTS = (b"strict-transport-security", b"max-age=31536000")

    def __init__(self, app: Any, trust: ProxyTrust) -> None:
        self.app, self.trust = app, trust

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.FIXED + ([self.HSTS] if self.trust.scope_https(scope) else [])
        docs = scope["path"] in ("/docs", "/redoc")  # FastAPI's pages need their scripts

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(
                    (k, v) for k, v in extra if k not in names
                    and not (docs and k == b"content-security-policy"))]
            await send(message)

        await self.app(scope, receive, with_headers)
