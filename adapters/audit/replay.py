"""`partner-ca audit replay`: rebuild every projection from position 0 into a scratch store and
compare it row by row with the live one. (One module of about 540 lines on purpose: it is one
command whose three stages — rebuild in worker processes, write the scratch store, compare
in the database — share their table layouts and the progress shown; the views themselves
are the projections' own code and the in-memory stores of adapters/storage.)

The logs are read with plain cursors (``adapters.storage.logreader``: SQLite in pages of
10,000, PostgreSQL as one query through a server-side cursor); the records a
projection follows are decoded and fed to the projection's own ``process_event``
— the same code the live views run — with an in-memory view behind it. The work
is spread over worker processes (both cores): the CA's log is split by
aggregate into ``PARTS`` (every certificate's events fall in one part; the
database selects them), and each part is read and decoded once for both the
status view and the OCSP answers; the portal's log feeds the email outbox.

The rebuilt rows go to a scratch store, kept for inspection: SQLite files in the
scratch directory on the embedded default; on PostgreSQL the status view and
the OCSP answers go to schema ``partner_ca_replay`` of the CA's database (made
anew by each run, written with COPY) and the email outbox to the scratch
directory. Each view is then compared with the live one inside the database (the
live SQLite file attached to the scratch one; a join in PostgreSQL).

The rebuild stops at the position the live view has reached (its tracking
record), so a live view that is merely behind is not reported. Compared: the
revocation-status view (every column), the OCSP response store (serial, status,
reason, revocation time, deciding position — the rebuild records the answers
and does not sign them: signatures and signing times differ by nature), the
email outbox (id, kind, recipient, language, parameters — delivery state is not
history).
"""
from __future__ import annotations

import gc
import logging
import multiprocessing
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from adapters.compat import singledispatch
from adapters.storage.logreader import Decoder, Part, records
from adapters.storage.memory_views import MemoryMailOutbox, MemoryOcspStore, MemoryStatusView
from adapters.storage.persistence import (
    mail_outbox,
    ocsp_store,
    open_ca_store,
    open_portal_store,
    opening,
    status_view,
    store_env,
)
from adapters.storage.sql_status import SQLiteStatusView
from ca_core.authority import Authority
from ca_core.certificate import serial_hex
from ca_core.clock import SystemClock
from ca_core.ocsp import HASHES, Answer, stored_response_findings
from ca_core.policy import IssuancePolicy, PortalPolicy
from ca_core.request import CertificateRequest
from ca_core.x509profile import from_pem
from projections.notifications import Mail, NotificationProjection, Recipient
from projections.ocsp import (
    CA_PREFIX,
    OcspResponseProjection,
    OcspStore,
)
from projections.ocsp import COLUMNS as OCSP_COLUMNS
from projections.status import COLUMNS, RevocationStatusProjection

TICK = 10_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Difference:
    view: str
    key: str
    live: Any
    rebuilt: Any
    #: what is wrong, when it is not a difference of values (a stored response's content)
    note: str = ""

    def __str__(self) -> str:
        if self.note:
            return f"{self.view} {self.key}: {self.note}"
        return f"{self.view} {self.key}: live {self.live!r}, rebuilt {self.rebuilt!r}"


@dataclass(frozen=True)
class ReplayReport:
    events: int  # log positions covered (both logs, up to the live views' positions)
    decoded: int  # events a projection follows: read, decoded and processed (per view)
    seconds: float
    compared: dict[str, int]
    differences: list[Difference]


@dataclass(frozen=True)
class LiveStores:
    """Where the logs and the live views to check are, and the policies to read them with:
    the values the audit role needs (its wiring builds them from the settings)."""

    ca_url: str
    portal_url: str
    data_dir: Path
    issuance: IssuancePolicy
    portal_rules: PortalPolicy

    def store_url(self, app: str) -> str:
        return self.ca_url if app == "ca" else self.portal_url

    def issuance_policy(self) -> IssuancePolicy:
        return self.issuance

    def portal_policy(self) -> PortalPolicy:
        return self.portal_rules


# -- the rebuilt views: in memory (adapters/storage/memory_views.py), behind the projections'
# own code; the OCSP answers are recorded, not signed --------------------------------------
class _Answers(OcspResponseProjection):
    """The OCSP projection recording what it would sign, without signing (one signing time
    for all: it is not compared)."""

    def __init__(self, view: OcspStore) -> None:
        super().__init__(view)
        self.answers: dict[str, tuple[Answer, int]] = {}  # serial → answer, deciding position

    def _save(self, answer: Answer, tracking: Tracking, generation: int = 0) -> None:
        self.answers[answer.serial] = (answer, tracking.notification_id)
        self.view.insert_tracking(tracking)

    def rows(self, text: bool) -> list[tuple[Any, ...]]:
        """The store's rows as column values (``OCSP_COLUMNS``; with ``text``, times as the
        SQLite store holds them), by serial; nothing signed."""
        now: Any = self.clock.now()
        until: Any = now + self.validity
        if text:
            now, until = now.isoformat(), until.isoformat()
        return [(serial, answer.status, answer.reason,
                 answer.revoked_at.isoformat() if text and answer.revoked_at is not None
                 else answer.revoked_at, b"", b"", now, until, "replay", position)
                for serial, (answer, position) in sorted(self.answers.items())]


# -- rebuilding ----------------------------------------------------------------------------
def _handler(projection: Projection[Any], event_type: type) -> Callable[[Any, Tracking], None]:
    """The projection's ``process_event`` for one event type, dispatched once: a
    ``singledispatchmethod`` re-dispatches (and wraps) on every call in Python 3.11."""
    return singledispatch.handler(projection, "process_event", event_type)


def _feed(source: Any, feeds: list[tuple[Projection[Any], int]], progress: Any,
          part: Part | None = None, extra: tuple[str, Callable[[Any], None]] | None = None
          ) -> int:
    """Feed each projection of ``feeds`` the events of ``source`` it follows, up to its own
    position (its topics filtered in SQL, as eventsourcing's projection runner does; each
    record read and decoded once for all of them); returns how many were decoded.
    ``progress.value``: the log position reached."""
    decode = Decoder(source)
    upto = max(stop for _, stop in feeds)
    wanted = sorted({t for projection, _ in feeds for t in projection.topics}
                    | ({extra[0]} if extra else set()))
    routes: dict[str, list[tuple[Callable[[Any, Tracking], None], int]]] = {}
    name = source.name
    decoded = 0
    for decoded, record in enumerate(records(source, stop=upto, topics=wanted, part=part), 1):
        event = decode(record)
        position = record.position
        if not decoded % TICK:
            progress.value = position
        route = routes.get(record.topic)  # a topic names one event class
        if route is None:
            route = routes[record.topic] = [
                (_handler(projection, type(event)), stop) for projection, stop in feeds
                if record.topic in projection.topics]
            if extra is not None and record.topic == extra[0]:
                route.append((lambda event, _: extra[1](event), upto))
        tracking = Tracking(name, position)
        for handle, stop in route:
            if position <= stop:
                handle(event, tracking)
    progress.value = upto
    return decoded


@dataclass(frozen=True)
class _Result:
    view: str
    covered: int  # log positions up to the live view's
    decoded: int
    compared: int
    differences: list[Difference]


PARTS = 2  # the CA's log is rebuilt in this many processes, split by aggregate
MAX_DIFFERENCES = 1000  # per view: enough to see what is wrong


def _app(stores: LiveStores, which: str) -> Any:
    """An application to read: the audit role opens no key and no portal secret."""
    if which == "ca":
        return opening()(open_ca_store, stores.store_url("ca"), stores.data_dir,
                         stores.issuance_policy(), SystemClock())
    return opening()(open_portal_store, stores.store_url("portal"), stores.data_dir,
                     stores.portal_policy(), SystemClock())


_STORES: dict[str, Callable[[str, Path], Any]] = {
    "revocation_status": status_view, "ocsp_responses": ocsp_store, "mail_outbox": mail_outbox}


def _scratch(which: str, scratch: Path) -> Any:
    return _STORES[which]("", scratch)


def _live(stores: LiveStores, which: str) -> Any:
    return opening()(_STORES[which],
                     stores.store_url("portal" if which == "mail_outbox" else "ca"),
                     stores.data_dir)


_progress: list[Any] = []  # in a worker: the shared log positions reached (``_share``)


def _share(positions: list[Any]) -> None:
    _progress[:] = positions
    gc.disable()  # a worker builds hundreds of thousands of objects that live until it ends


def _rebuild_ca(stores: LiveStores, scratch: Path, part: int, upto: dict[str, int]) -> int:
    """Partition ``part`` of the CA's log (``PARTS`` in all: every certificate's events fall in
    one) into the status view and the OCSP answers, written to the scratch stores."""
    started = time.perf_counter()
    ca = _app(stores, "ca")
    status_rows = MemoryStatusView()
    status = RevocationStatusProjection(status_rows)
    answers = _Answers(MemoryOcspStore())
    decoded = _feed(ca, [(status, upto["revocation_status"]), (answers, upto["ocsp_responses"])],
                    _progress[part], part=(part, PARTS))
    ca.close()
    fed = time.perf_counter()
    if stores.store_url("ca"):
        _copy(stores.store_url("ca"), "revocation_status", COLUMNS,
              map(attrgetter(*COLUMNS), status_rows.by_serial.values()))
        _copy(stores.store_url("ca"), "ocsp_responses", OCSP_COLUMNS, answers.rows(False))
    else:
        writes = [("revocation_status", sorted(map(SQLiteStatusView.stored,
                                                   status_rows.by_serial.values()))),
                  ("ocsp_responses", answers.rows(True))]
        for view, values in writes[part % 2:] + writes[:part % 2]:  # the parts take turns
            _insert(_sqlite_file(view, scratch), view, values)
    log.debug("replay part %d: %d events read and fed in %.2f s, written in %.2f s", part,
              decoded, fed - started, time.perf_counter() - fed)
    return decoded


def _rebuild_mail(stores: LiveStores, scratch: Path, upto: int) -> _Result:
    portal = _app(stores, "portal")
    mails = NotificationProjection(MemoryMailOutbox())
    owners: dict[UUID, str] = {}
    recipients: dict[str, Recipient] = {}

    def remember_owner(event: Any) -> None:
        owners[event.originator_id] = event.user_id

    def recipient(user_id: str) -> Recipient:
        if user_id not in recipients:
            partner = portal.partner(user_id)
            recipients[user_id] = Recipient(user_id, partner.email, partner.language)
        return recipients[user_id]

    mails.owner = lambda request_id: owners.get(request_id) or portal.request(request_id).user_id
    mails.recipient = recipient
    mails.clock_now = portal.clock.now
    decoded = _feed(portal, [(mails, upto)], _progress[PARTS],
                    extra=(get_topic(CertificateRequest.CsrSubmitted), remember_owner))
    _scratch("mail_outbox", scratch).add(mails.view.all(), None)

    def content(mail: Mail) -> tuple[Any, ...]:
        return (mail.kind, mail.recipient, mail.language, mail.params)

    differences: list[Difference] = []
    live = _live(stores, "mail_outbox")
    compared = _compare(
        "mail_outbox", {m.id: content(m) for m in live.all() if "." in m.id
                        and not m.id.startswith("reminder.")},
        {m.id: content(m) for m in mails.view.all()}, differences)
    portal.close()
    return _Result("mail_outbox", upto, decoded, compared, differences[:MAX_DIFFERENCES])


# -- comparing -------------------------------------------------------------------------------
def _compare(view: str, live: dict[str, Any], rebuilt: dict[str, Any],
             differences: list[Difference]) -> int:
    if live == rebuilt:  # the usual case, decided in C
        return len(live)
    for key in sorted(set(live) | set(rebuilt)):
        if live.get(key) != rebuilt.get(key):
            differences.append(Difference(view, key, live.get(key), rebuilt.get(key)))
    return len(set(live) | set(rebuilt))


@dataclass(frozen=True)
class _Table:
    """A view's table: what ``_sql_compare`` and ``_pg_compare`` compare."""

    name: str
    key: str
    columns: tuple[str, ...]
    where: str = "TRUE"  # the live rows that are a projection of the log


_TABLES = {
    "revocation_status": _Table("revocation_status", "serial", COLUMNS[1:]),
    "ocsp_responses": _Table("ocsp_responses", "serial",
                             ("status", "reason", "revoked_at", "cause_position"),
                             f"serial NOT LIKE '{CA_PREFIX}%'"),
}


def _unindexed(scratch: Path) -> None:
    """Drop the secondary indexes of the scratch SQLite tables: they are written once and
    compared by key (a tenth less work per row written)."""
    for view in _TABLES:
        db = sqlite3.connect(_sqlite_file(view, scratch))
        try:
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                      "AND sql IS NOT NULL").fetchall():
                db.execute(f'DROP INDEX "{name}"')
            db.commit()
        finally:
            db.close()


def _insert(path: str, table: str, values: list[tuple[Any, ...]]) -> None:
    """Rows into a scratch SQLite table, in one transaction (waiting for the other part)."""
    if not values:
        return
    db = sqlite3.connect(path, timeout=60)
    try:
        with db:
            db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values[0]))})",  # noqa: S608 - our names
                           values)
    finally:
        db.close()


def _sqlite_file(view: str, directory: Path) -> str:
    return store_env("", directory, view)["SQLITE_DBNAME"]


def _sql_compare(table: _Table, scratch_db: str, live_db: str) -> tuple[int, list[Difference]]:
    """Row by row, inside SQLite (the live file attached read-only to the scratch one):
    (rows compared, the first differences)."""
    t, k = table.name, table.key
    differs = " OR ".join(f"s.{c} IS NOT l.{c}" for c in table.columns)
    picked = ", ".join((k, *table.columns))
    db = sqlite3.connect(scratch_db)
    try:
        db.execute("ATTACH DATABASE ? AS live", (f"file:{live_db}?mode=ro",))
        found = db.execute(
            # the scratch holds only rows of the log, so a live row it matches is one too
            f"SELECT s.{k} FROM main.{t} s LEFT JOIN live.{t} l ON l.{k} = s.{k} "  # noqa: S608 - our names
            f"WHERE l.{k} IS NULL OR {differs} "
            f"UNION ALL SELECT l.{k} FROM live.{t} l WHERE {table.where} AND NOT EXISTS "
            f"(SELECT 1 FROM main.{t} s WHERE s.{k} = l.{k}) ORDER BY 1").fetchall()
        rebuilt_count = db.execute(f"SELECT count(*) FROM main.{t}").fetchone()[0]  # noqa: S608
        live_only = 0
        differences: list[Difference] = []
        for (key,) in found:
            live = db.execute(f"SELECT {picked} FROM live.{t} WHERE {k} = ?", (key,)).fetchone()  # noqa: S608
            rebuilt = db.execute(f"SELECT {picked} FROM main.{t} WHERE {k} = ?", (key,)).fetchone()  # noqa: S608
            live_only += rebuilt is None
            if len(differences) < MAX_DIFFERENCES:
                differences.append(Difference(t, key, live, rebuilt))
        return rebuilt_count + live_only, differences
    finally:
        db.close()


def _pg_compare(url: str, table: _Table) -> tuple[int, list[Difference]]:
    """Row by row, inside PostgreSQL (scratch schema against the live table): (rows compared,
    the first differences)."""
    t, k, cols = table.name, table.key, table.columns
    differs = " OR ".join(f"s.{c} IS DISTINCT FROM l.{c}" for c in cols)
    live = f"(SELECT * FROM {t} WHERE {table.where.replace('%', '%%')})"  # noqa: S608 - our names
    with psycopg.connect(url, autocommit=True) as conn:
        compared, keys = conn.execute(
            f"SELECT count(*), (array_agg(coalesce(s.{k}, l.{k}) ORDER BY coalesce(s.{k}, l.{k})) "  # noqa: S608 - our names
            f"FILTER (WHERE s.{k} IS NULL OR l.{k} IS NULL OR {differs}))[1:{MAX_DIFFERENCES}] "
            f"FROM {SCRATCH_SCHEMA}.{t} s FULL JOIN {live} l ON l.{k} = s.{k}").fetchone() or (0, [])
        picked = f"SELECT {k}, {', '.join(cols)} FROM {{}} WHERE {k} = ANY(%s)"  # noqa: S608
        found = [{row[0]: row for row in conn.execute(picked.format(name), (keys or [],))}
                 for name in (t, f"{SCRATCH_SCHEMA}.{t}")]
    return compared, [Difference(t, key, found[0].get(key), found[1].get(key))
                      for key in keys or []]


#: PostgreSQL: the schema (in the CA's database) the rebuilt status view and OCSP answers are
#: written to, made anew by each run and left for inspection.
SCRATCH_SCHEMA = "partner_ca_replay"


def _pg_scratch(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCRATCH_SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCRATCH_SCHEMA}")
        for view in _TABLES:  # the live tables' columns; no indexes (written once, joined once)
            conn.execute(f"CREATE TABLE {SCRATCH_SCHEMA}.{view} (LIKE {view} INCLUDING DEFAULTS)")


def _copy(url: str, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    """Rows into the scratch table with COPY (binary)."""
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        types: dict[str, str] = dict(cursor.execute(  # the live table's column types
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0", (table,)).fetchall())
        with cursor.copy(f"COPY {SCRATCH_SCHEMA}.{table} ({', '.join(columns)}) "
                         "FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([types[c] for c in columns])
            for row in rows:
                copy.write_row(row)


def _signers(ca: Any) -> dict[str, Any]:
    """Every certificate that ever signed stored OCSP responses: the delegated signers the
    CA's log records, and the root (its answers about the issuing CA)."""
    root = from_pem(ca.authority().root_certificate_pem)
    found = {serial_hex(root.serial_number): root}
    decode = Decoder(ca)
    for record in records(ca, topics=[get_topic(Authority.OcspSignerIssued)]):
        event = decode(record)
        found[event.serial] = from_pem(event.certificate_pem)
    return found


def _check_responses(stores: LiveStores, part: int, verify_signatures: bool
                     ) -> tuple[int, list[Difference]]:
    """Partition ``part`` of the live OCSP store: does each stored response (both CertID
    hashes) say what its row says — the row being what ``_compare_ca_view`` checks against
    the rebuilt view? A row whose bytes were swapped for an earlier, validly signed answer
    (``good`` for a revoked certificate) is found here. (rows checked, findings)"""

    started = time.perf_counter()
    ca = _app(stores, "ca")
    authority = ca.authority()
    issuing = {ca.generation: from_pem(ca.certificate_pem)  # every issuing CA, by generation
               for ca in authority.issuing.values()}
    root = from_pem(authority.root_certificate_pem)
    issuer_of = authority.signer_generations
    signers = _signers(ca)
    ca.close()
    store = _live(stores, "ocsp_responses")
    rows = store.partition(part, PARTS)
    differences: list[Difference] = []
    for row in rows:
        about_ca = row.serial.startswith(CA_PREFIX)
        expected = Answer(row.serial.removeprefix(CA_PREFIX), row.status, row.revoked_at,
                          row.reason)
        for algorithm in HASHES:
            findings = stored_response_findings(
                row.der(algorithm), algorithm, expected,
                root if about_ca else issuing[issuer_of.get(row.signer_serial, 0)],
                row.this_update, row.next_update, signers.get(row.signer_serial),
                verify_signatures)
            differences.extend(Difference("ocsp_responses", row.serial, row.der(algorithm),
                                          expected, note=finding) for finding in findings)
    log.debug("replay checked %d stored OCSP responses (part %d) in %.2f s", len(rows), part,
              time.perf_counter() - started)
    return len(rows), differences[:MAX_DIFFERENCES]


def _compare_ca_view(stores: LiveStores, scratch: Path, view: str
                     ) -> tuple[int, list[Difference]]:
    started = time.perf_counter()
    if stores.store_url("ca"):
        found = _pg_compare(stores.store_url("ca"), _TABLES[view])
    else:
        found = _sql_compare(_TABLES[view], _sqlite_file(view, scratch),
                             _sqlite_file(view, stores.data_dir))
    log.debug("replay compared %s in %.2f s", view, time.perf_counter() - started)
    return found


# -- the whole run ---------------------------------------------------------------------------
def total_positions(ca: Any, portal: Any) -> int:
    """What the progress of ``replay`` runs up to: the CA's log once per partition, the
    portal's once."""
    return PARTS * (ca.recorder.max_notification_id() or 0) + (
        portal.recorder.max_notification_id() or 0)


def replay(stores: LiveStores, scratch: Path | None = None,
           tick: Callable[[int], None] | None = None, processes: int = 2,
           verify_signatures: bool = False) -> ReplayReport:
    """Rebuild the views in ``processes`` worker processes (the CA's log split by aggregate
    into ``PARTS``, each part feeding the status view and the OCSP answers; the portal's log
    into the email outbox), then compare each view with the live one, also in parallel."""
    started = time.perf_counter()
    scratch = scratch or Path(tempfile.mkdtemp(prefix="partner-ca-replay-"))
    # fork: the workers start at once with everything imported (spawn costs ~0.5 s of a 6 s
    # run). The pool starts before this process opens anything; the workers open their own
    # stores and never use what they inherit (they end with os._exit, closing nothing).
    context = multiprocessing.get_context("fork")
    positions = [context.Value("q", 0, lock=False) for _ in range(PARTS + 1)]
    pool = context.Pool(processes, _share, (positions,))  # starting while we look at the views
    upto = {view: _live(stores, view).max_tracking_id(
        "portal" if view == "mail_outbox" else "ca") or 0 for view in _TABLES | {"mail_outbox": 0}}
    # the scratch tables exist before the workers write
    _scratch("mail_outbox", scratch)
    if stores.store_url("ca"):
        _pg_scratch(stores.store_url("ca"))
    else:
        for view in _TABLES:
            _scratch(view, scratch)
        _unindexed(scratch)
    seen = 0

    def report() -> None:
        nonlocal seen
        reached = sum(position.value for position in positions)
        if tick is not None and reached > seen:
            tick(reached - seen)
            seen = reached

    def wait(jobs: list[Any]) -> list[Any]:
        while not all(job.ready() for job in jobs):
            time.sleep(0.05)
            report()
        return [job.get() for job in jobs]

    with pool:
        parts = [pool.apply_async(_rebuild_ca, (stores, scratch, k, upto))
                 for k in range(PARTS)]
        mail = pool.apply_async(_rebuild_mail, (stores, scratch, upto["mail_outbox"]))
        decoded = sum(wait(parts))
        checks = [pool.apply_async(_compare_ca_view, (stores, scratch, view))
                  for view in _TABLES]
        responses = [pool.apply_async(_check_responses, (stores, k, verify_signatures))
                     for k in range(PARTS)]
        results = [_Result(view, upto[view], decoded if view == "revocation_status" else 0,
                           compared, differences)
                   for view, (compared, differences) in zip(_TABLES, wait(checks), strict=True)]
        results.append(wait([mail])[0])
        signed = wait(responses)
        results.append(_Result("ocsp_signed_responses", 0, 0, sum(n for n, _ in signed),
                               [d for _, found in signed for d in found][:MAX_DIFFERENCES]))
    report()
    covered = max(upto["revocation_status"], upto["ocsp_responses"]) + upto["mail_outbox"]
    return ReplayReport(covered, sum(r.decoded for r in results), time.perf_counter() - started,
                        {r.view: r.compared for r in results},
                        [d for r in results for d in r.differences])
