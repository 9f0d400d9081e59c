"""The auditor's pages: the history of a partner or a certificate across the logs, the
status at a moment and the event that decided it, which events a signed tree head covers,
the timeline as a picture, and a CSV of it."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.

import csv
import io
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Request
from fastapi.responses import Response

from adapters.audit.history import HistoryIndex
from adapters.portal.ops_auth import OpsIdentity
from adapters.portal.pages.kit import PageKit
from ca_core.certificate import (
    Certificate,
    CertificateStatus,
    deciding_event,
    deciding_portal_event,
    parse_serial,
)
from ca_core.errors import DomainError, NotAuthenticated
from ca_core.treehead import head_id


def audit_pages(kit: PageKit, audit_apps: Callable[[], list[Any]] | None = None) -> APIRouter:
    """The auditor's pages; ``audit_apps``: the applications whose logs they read (default:
    the portal's)."""
    web = APIRouter(include_in_schema=False)
    portal = kit.portal
    histories = HistoryIndex()  # what each log holds about whom, read once and then added to

    # -- auditor pages -------------------------------------------------------------------------
    def audit_entries(who: OpsIdentity, user: str | None, serial: str | None) -> list[Any]:
        if "operator" not in who.roles:  # a module administrator: certificates of his modules
            if serial is None or user is not None:
                who.check_operator()
            who.visible_request_for_serial(portal, serial)
        apps = audit_apps() if audit_apps else [portal]
        return histories.history(apps, user_id=user, serial=serial)

    def signed_sizes() -> dict[str, int]:
        """How many events of each log the latest signed tree head covers."""
        sizes = {}
        for app in (audit_apps() if audit_apps else [portal]):
            try:
                sizes[app.name] = app.repository.get(head_id(app.name)).tree_size
            except AggregateNotFoundError:
                sizes[app.name] = 0
        return sizes

    @web.get("/audit")
    def audit_page(request: Request, user: str = "", serial: str = "", at: str = "") -> Response:
        page = kit.page(request)
        who = kit.ops_identity(request)
        if who is None:
            return kit.render(page, "ops_login.html", status=401)
        try:
            serial_hex = parse_serial(serial) if serial else None
            entries = audit_entries(who, user or None, serial_hex) if (user or serial) else []
            moment = _instant(at) if at else None
        except (DomainError, ValueError) as exc:
            failed = exc if isinstance(exc, DomainError) else None
            return kit.render(page, "audit.html", status=failed.http_status if failed else 400,
                          who=who, user=user, serial=serial, at=at, entries=[],
                          error=str(exc), code=failed.code if failed else "request-invalid",
                          picture=None, status_at=None)
        status_at = None
        if moment is not None and serial_hex:
            status_at = _status_from(entries, serial_hex, moment)
        sizes = signed_sizes()
        return kit.render(page, "audit.html", who=who, user=user, serial=serial, at=at,
                      entries=[_row(e, sizes) for e in entries], status_at=status_at,
                      picture=_picture(entries), query=urllib.parse.urlencode(
                          {k: v for k, v in (("user", user), ("serial", serial)) if v}))

    @web.get("/audit.csv")
    def audit_csv(request: Request, user: str = "", serial: str = "") -> Response:
        who = kit.ops_identity(request)
        if who is None:
            raise NotAuthenticated("an ops token is required", code="ops-token-required")
        entries = audit_entries(who, user or None, parse_serial(serial) if serial else None)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["time", "store", "position", "event", "aggregate",
                         "covered_by_signed_head", "fields"])
        sizes = signed_sizes()
        for entry in entries:
            row = _row(entry, sizes)
            writer.writerow([row["time"], row["store"], row["position"], row["event"],
                             row["aggregate"], "yes" if row["covered"] else "no",
                             row["fields"]])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="history.csv"'})

    return web

    return web


def _instant(text_value: str) -> datetime:
    moment = datetime.fromisoformat(text_value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _row(entry: Any, signed: dict[str, int]) -> dict[str, Any]:
    fields = entry.event.public_fields()
    return {"time": entry.event.timestamp.isoformat(timespec="seconds"), "store": entry.store,
            "position": entry.position, "event": entry.type, "aggregate": entry.aggregate,
            "covered": entry.position <= signed.get(entry.store, 0),
            "fields": ", ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))}


def _status_from(entries: list[Any], serial: str, moment: datetime) -> dict[str, Any]:
    """The certificate's status at ``moment`` and the event that decided it: the CA log's
    own events of that certificate, through the one function ``audit at`` uses too
    (``deciding_event``). Without the CA's log (a portal-only page), what the portal
    recorded of it."""
    certificate_id = Certificate.id_for(serial)
    ours = [e for e in entries if e.store == "ca" and e.event.originator_id == certificate_id]
    if ours:
        by_event = {id(e.event): e for e in ours}
        status, reason, cause = deciding_event((e.event for e in ours), moment)
        decided = by_event.get(id(cause)) if cause is not None else None
    else:  # what the portal recorded of it: the same decision from its own events
        by_event = {id(e.event): e for e in entries}
        status, reason, cause = deciding_portal_event((e.event for e in entries), serial,
                                                      moment)
        decided = by_event.get(id(cause)) if cause is not None else None
    return {"status": CertificateStatus(status).value, "reason": reason,
            "decided_by": decided.type if decided else None,
            "position": decided.position if decided else None,
            "store": decided.store if decided else None}


def _picture(entries: list[Any]) -> dict[str, Any] | None:
    """The timeline as an SVG: one mark per event along a time axis, one row per store."""
    if not entries:
        return None
    first = entries[0].event.timestamp.timestamp()
    last = entries[-1].event.timestamp.timestamp()
    span = max(last - first, 1.0)
    width, left = 880, 110
    stores = sorted({e.store for e in entries})
    marks = [{"x": round(left + (e.event.timestamp.timestamp() - first) / span * (width - left
                                                                                  - 20), 1),
              "y": 30 + 40 * stores.index(e.store), "label": e.type,
              "position": e.position, "store": e.store} for e in entries]
    return {"width": width, "height": 40 * len(stores) + 40, "left": left,
            "rows": [{"store": s, "y": 30 + 40 * i} for i, s in enumerate(stores)],
            "marks": marks, "from": entries[0].event.timestamp.isoformat(timespec="seconds"),
            "to": entries[-1].event.timestamp.isoformat(timespec="seconds")}
