"""Portal sessions: signed (itsdangerous, under the portal secret), recorded
(``SessionOpened``), checked against the record on every use; and which peers are trusted
proxies (whose X-Forwarded-* headers are believed) — the one place either is decided."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from uuid import uuid4

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.requests import Request

from adapters.portal.http.claims import SessionClaims
from adapters.portal.ops_auth import OpsIdentity, OpsTokens
from ca_core.errors import DomainError, NotAuthenticated
from ca_core.portal import Portal


class ProxyTrust:
    """Which peers are trusted proxies, and what that makes of a request: the real client
    address and whether the client came over HTTPS."""

    def __init__(self, trusted_proxies: Sequence[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def from_trusted_proxy(self, request: Request) -> bool:
        return request.client is not None and self.trusted(request.client.host)

    def client_address(self, request: Request) -> str:
        """The real client: the peer, unless the peer is a trusted proxy; then the nearest
        address in X-Forwarded-For that is not one (a client cannot choose its bucket by
        sending the header itself: only trusted proxies' additions count)."""
        peer = request.client.host if request.client else "unknown"
        if not self.trusted(peer):
            return peer
        hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for"))
                .split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                return hop
        return peer

    def https(self, scheme: str, peer: str, forwarded_proto: Iterable[str] | str) -> bool:
        """Whether the client came over HTTPS: directly, or through a trusted proxy that says
        so in X-Forwarded-Proto (its own, last, entry)."""
        if scheme == "https":
            return True
        proto = forwarded_proto if isinstance(forwarded_proto, str) else ",".join(
            forwarded_proto)
        return self.trusted(peer) and proto.split(",")[-1].strip() == "https"

    def request_https(self, request: Request) -> bool:
        return self.https(request.url.scheme, request.client.host if request.client else "",
                          request.headers.get("x-forwarded-proto", ""))

    def scope_https(self, scope: Mapping[str, object]) -> bool:
        headers = dict(scope.get("headers") or [])  # type: ignore[call-overload]
        peer = (scope.get("client") or ("",))[0]  # type: ignore[index]
        return self.https(str(scope.get("scheme", "")), str(peer),
                          headers.get(b"x-forwarded-proto", b"").decode("latin-1"))


class Sessions:
    """Opens (records and signs) and verifies the portal's sessions; knows the proxy trust."""

    def __init__(self, portal: Portal, trust: ProxyTrust,
                 ops_tokens: OpsTokens | None = None) -> None:
        self.portal = portal
        self.trust = trust
        self.ops_tokens = ops_tokens
        self.serializer = URLSafeTimedSerializer(portal.secret, salt="partner-ca portal session")
        self.lifetime = int(portal.rules.session_lifetime.total_seconds())

    # -- opening ------------------------------------------------------------------------
    def open(self, claims: SessionClaims) -> str:
        """A new session, recorded (``SessionOpened``), and its token."""
        session_id = str(uuid4())
        self.portal.sessions.open(session_id, claims.user, claims.kind, claims.module,
                                 claims.serial)
        return self.serializer.dumps({**claims.signed_form(), "i": session_id})

    def open_ops(self, who: OpsIdentity) -> str:
        """An ops page session for a token just checked: recorded (``SessionOpened``, kind
        ``ops``), short (the session lifetime), bound to that token; the browser keeps this,
        never the long-lived ops token."""
        return self.open(SessionClaims.for_ops(who.name, who.token_id))

    # -- verifying ------------------------------------------------------------------------
    def verify(self, token: str) -> SessionClaims:
        """A signed token's claims, checked against the recorded session (ended, or every
        session of the user ended by ops: refused)."""
        try:
            data = self.serializer.loads(token, max_age=self.lifetime)
        except SignatureExpired:
            raise NotAuthenticated("the session has expired; log in again",
                                   code="session-expired") from None
        except BadSignature:
            raise NotAuthenticated("the session token is not valid",
                                   code="session-required") from None
        claims = SessionClaims.of(data)
        self.portal.sessions.check_open(claims.session_id, claims.user)
        return claims

    def partner(self, token: str) -> SessionClaims:
        """A partner's session (enrollment or certificate); a certificate session lasts only
        as long as its certificate (revoked, revocation asked for, expired: ended)."""
        claims = self.verify(token)
        if not claims.is_partner:
            raise NotAuthenticated("the session token is not valid", code="session-required")
        if claims.kind == "certificate":
            self.portal.sessions.check_certificate(claims.certificate())
        return claims

    def enrollment(self, token: str) -> SessionClaims:
        claims = self.partner(token)
        if claims.kind != "enrollment":
            raise NotAuthenticated("this needs an OTP login (enrollment session)",
                                   code="session-required")
        return claims

    def certificate(self, token: str) -> SessionClaims:
        claims = self.partner(token)
        if claims.kind != "certificate":
            raise NotAuthenticated("this needs a certificate login", code="session-required")
        return claims

    def ops(self, token: str) -> tuple[OpsIdentity, SessionClaims] | None:
        """(identity, claims) of an open ops page session whose token is still valid, or
        None."""
        try:
            claims = self.verify(token)
        except DomainError:
            return None
        if claims.kind != "ops" or self.ops_tokens is None:
            return None
        who = self.ops_tokens.session_identity(claims.user.removeprefix("ops:"),
                                               claims.token_id or "")
        return (who, claims) if who is not None else None

