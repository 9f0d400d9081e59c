"""Portal sessions (R2, R5): opened by a login, ended by logout or by ops, refused once
ended by every portal process; a certificate session lasts only as long as its certificate.
A collaborator of the Portal application (``Portal.sessions``). The aggregate and its events
stay in ca_core/portal.py, where the stored events' topics name them; the Portal hands the
class in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from ca_core.certificate import CertificateStatus, effective_status
from ca_core.conflicts import retried_on_conflict
from ca_core.errors import NotAuthenticated, NotFound
from ca_core.log_index import LogIndex

if TYPE_CHECKING:
    from ca_core.portal import CertificateSession, OpenSession, Portal, PortalSession


def _by_user(index: dict[str, list[tuple[Any, ...]]], opened: Any) -> None:
    """(session id, kind, module, serial, opened at, expires at), by user."""
    index.setdefault(opened.user_id, []).append((
        opened.originator_id, opened.kind, opened.module, opened.serial, opened.timestamp,
        opened.expires_at))


class PortalSessions:
    """The sessions of one Portal application (``session``: the PortalSession aggregate,
    ``listed``: how ops see one, ``OpenSession``)."""

    def __init__(self, portal: Portal, session: type[PortalSession],
                 listed: type[OpenSession]) -> None:
        self.portal, self.session, self.listed = portal, session, listed
        #: every session opened, by user (read from the log once, then only what is new)
        self._opened: LogIndex[dict[str, list[tuple[Any, ...]]]] = LogIndex(
            portal, [session.SessionOpened], {}, _by_user)

    def _find(self, session_id: UUID) -> PortalSession | None:
        try:
            return cast("PortalSession", self.portal.repository.get(session_id))
        except AggregateNotFoundError:
            return None

    def open(self, session_id: str, user_id: str, kind: str, module: str,
             serial: str | None = None) -> None:
        portal = self.portal
        portal.save(self.session.open(session_id, user_id, kind, module, serial,
                                      portal.clock.now(), portal.rules.session_lifetime))

    @retried_on_conflict
    def end(self, session_id: str, by: str) -> bool:
        """Logout, or ops ending one session: refused from now on by every portal process."""
        found = self._find(self.session.id_for(session_id))
        if found is None or found.ended_by is not None:
            return False
        found.end(ended_by=by, timestamp=self.portal.clock.now())
        self.portal.save(found)
        return True

    @retried_on_conflict
    def end_all(self, user_id: str, by: str) -> None:
        """Ops: end every session of a user opened until now."""
        partner = self.portal.partner(user_id)
        partner.end_sessions(ended_by=by, timestamp=self.portal.clock.now())
        self.portal.save(partner)

    def open_of(self, user_id: str) -> list[OpenSession]:
        """The user's sessions still open (ops)."""
        now = self.portal.clock.now()
        until = self.portal.partner(user_id).sessions_ended_at
        def expired_out(by_user: dict[str, list[tuple[Any, ...]]]) -> None:
            for user in list(by_user):  # what has expired is of no one's interest any more
                by_user[user] = [o for o in by_user[user] if o[5] > now]
                if not by_user[user]:
                    del by_user[user]

        opened = list(self._opened.current(expired_out).get(user_id, []))
        found = []
        for session_id, kind, module, serial, opened_at, expires_at in opened:
            if until is not None and opened_at <= until:
                continue
            current = self._find(session_id)
            if current is not None and current.ended_by is None:
                found.append(self.listed(session_id, user_id, kind, module, serial, opened_at,
                                         expires_at))
        return found

    def check_open(self, session_id: str, user_id: str) -> None:
        """The session is recorded, not ended, not ended with all of its user's (ops)."""
        found = self._find(self.session.id_for(session_id))
        ended = found is None or found.ended_by is not None or found.user_id != user_id
        if found is not None and not ended:
            try:
                until = self.portal.partner(user_id).sessions_ended_at
            except NotFound:
                until = None
            ended = until is not None and found.opened_at <= until
        if ended:
            raise NotAuthenticated("the session has ended; log in again", code="session-ended")

    def check_certificate(self, session: CertificateSession) -> None:
        """A certificate session lasts only as long as its certificate: a revocation asked for,
        confirmed, or an expiry ends it at once (R5 with R9, R11)."""
        request = self.portal.request(session.request_id)
        if request.revocation_pending or effective_status(
                request.certificate_status or CertificateStatus.GOOD, request.not_after,
                self.portal.clock.now()) != CertificateStatus.GOOD:
            raise NotAuthenticated(f"the session ended with certificate {session.serial} "
                                   "(revoked, revocation asked for, or expired)",
                                   code="session-ended")
