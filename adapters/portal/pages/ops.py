"""The ops console: module administrators and operators find a partner or a certificate
(and the event that decided where it stands), register partners, issue OTPs, revoke,
unlock. Logging in opens a short recorded session; the browser never keeps the ops token."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.

from collections.abc import Callable
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.portal.ops_auth import OpsIdentity
from adapters.portal.pages.kit import OPS_COOKIE, PageKit
from ca_core.certificate import RevocationReason, parse_serial
from ca_core.errors import DomainError


def ops_pages(kit: PageKit) -> APIRouter:
    """The ops console's pages."""
    web = APIRouter(include_in_schema=False)
    portal, ops_tokens = kit.portal, kit.sessions.ops_tokens

    @web.get("/ops")
    def ops_home(request: Request, q: str = "") -> Response:
        page = kit.page(request)
        who = kit.ops_identity(request)
        if who is None:
            return kit.render(page, "ops_login.html")
        found: dict[str, Any] = {}
        if q.strip():
            found = ops_search(who, q.strip())
        return kit.render(page, "ops.html", who=who, q=q, found=found,
                      modules=portal.rules.modules, reasons=[r.value for r in RevocationReason])

    def ops_search(who: OpsIdentity, q: str) -> dict[str, Any]:
        try:
            who.check_sees_partner(portal, q)
            partner = portal.partner(q)
        except DomainError:
            partner = None
        if partner is not None:
            visible = [r for r in (portal.request(i) for i in partner.requests)
                       if "operator" in who.roles or f"admin:{r.module}" in who.roles]
            return {"partner": partner, "requests": visible,
                    "causes": {r.id: cause_of(r.id) for r in visible}}
        try:
            request = who.visible_request_for_serial(portal, parse_serial(q))
        except DomainError as exc:
            return {"error": str(exc)}
        return {"requests": [request], "causes": {request.id: cause_of(request.id)}}

    def cause_of(request_id: UUID) -> str:
        """The event that decided where a request and its certificate stand, with its
        fields (what ops are asked first: why is it revoked, since when)."""
        last = None
        for event in portal.repository.event_store.get(request_id):
            last = event
        if last is None:
            return ""
        fields = ", ".join(f"{k}={v}" for k, v in last.public_fields().items()
                           if k in ("reason", "requested_by", "revoked_at", "via", "code",
                                    "attempts", "unlocked_by", "not_after"))
        return f"{type(last).__name__} {last.timestamp.isoformat(timespec='seconds')}" + (
            f" ({fields})" if fields else "")

    @web.post("/ops/login")
    async def ops_login(request: Request) -> Response:
        page = kit.page(request)
        try:
            kit.limit.check(request)
            form = await kit.form(request, page)
        except DomainError as exc:
            return kit.problem(page, "ops_login.html", exc)
        token = str(form.get("token", "")).strip()
        who = ops_tokens.authenticate(token) if ops_tokens is not None else None
        if who is None:
            return kit.render(page, "ops_login.html", status=401, error="the ops token is not "
                          "valid (or has expired)", code="ops-token-required")
        session = await run_in_threadpool(kit.sessions.open_ops, who)
        return kit.redirect(request, "/ops", (OPS_COOKIE, session))

    @web.post("/ops/logout")
    async def ops_logout(request: Request) -> Response:
        await kit.form(request, kit.page(request))
        found = await run_in_threadpool(kit.ops, request)
        if found is not None:  # ended for every portal process, not only this browser
            await run_in_threadpool(portal.sessions.end, found[1].session_id,
                                    f"ops:{found[0].name}")
        return kit.redirect(request, "/ops", (OPS_COOKIE, None))

    async def ops_action(request: Request, act: Callable[[OpsIdentity, dict[str, Any]], Any]
                         ) -> Response:
        page = kit.page(request)
        who = kit.ops_identity(request)
        if who is None:
            return kit.render(page, "ops_login.html", status=401)
        form = await kit.form(request, page)
        try:
            done = await run_in_threadpool(act, who, form)
        except DomainError as exc:
            return kit.render(page, "ops.html", status=exc.http_status, who=who, q="", found={},
                          modules=portal.rules.modules, error=str(exc), code=exc.code,
                          reasons=[r.value for r in RevocationReason])
        return kit.render(page, "ops.html", who=who, q="", found={}, done=done,
                      modules=portal.rules.modules, reasons=[r.value for r in RevocationReason])

    @web.post("/ops/partners")
    async def ops_register(request: Request) -> Response:
        def act(who: OpsIdentity, form: dict[str, Any]) -> str:
            modules = [m.strip() for m in str(form.get("modules", "")).split(",") if m.strip()]
            for module in modules:
                who.check_module(module)
            portal.register_partner(str(form.get("user_id", "")).strip(),
                                    str(form.get("email", "")).strip(), modules,
                                    registered_by=f"ops:{who.name}")
            return f"{form.get('user_id')}: registered in {', '.join(modules)}"
        return await ops_action(request, act)

    @web.post("/ops/otps")
    async def ops_issue_otp(request: Request) -> Response:
        page = kit.page(request)
        who = kit.ops_identity(request)
        if who is None:
            return kit.render(page, "ops_login.html", status=401)
        form = await kit.form(request, page)
        user, module = str(form.get("user_id", "")).strip(), str(form.get("module", ""))
        try:
            who.check_module(module)
            await run_in_threadpool(who.check_sees_partner, portal, user)
            _, otp = await run_in_threadpool(portal.issue_otp, user, module,
                                             f"ops:{who.name}")
        except DomainError as exc:
            return kit.render(page, "ops.html", status=exc.http_status, who=who, q="", found={},
                          modules=portal.rules.modules, error=str(exc), code=exc.code,
                          reasons=[r.value for r in RevocationReason])
        # shown on this answer only (no-store); never again, never logged
        return kit.render(page, "ops.html", who=who, q="", found={}, otp=otp, otp_user=user,
                      otp_module=module, modules=portal.rules.modules,
                      reasons=[r.value for r in RevocationReason])

    @web.post("/ops/revocations")
    async def ops_revoke(request: Request) -> Response:
        def act(who: OpsIdentity, form: dict[str, Any]) -> str:
            who.check_operator()
            serial = parse_serial(str(form.get("serial", "")))
            portal.revoke_as_operator(serial, str(form.get("reason", "")), who.name)
            return f"{serial}: revocation requested"
        return await ops_action(request, act)

    @web.post("/ops/unlocks")
    async def ops_unlock(request: Request) -> Response:
        def act(who: OpsIdentity, form: dict[str, Any]) -> str:
            who.check_operator()
            serial = parse_serial(str(form.get("serial", "")))
            changed = portal.unlock_revocation(serial, who.name)
            return f"{serial}: {'unlocked' if changed else 'was not locked'}"
        return await ops_action(request, act)

    return web
