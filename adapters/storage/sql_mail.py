"""The e-mail outbox in SQL: SQLite (its own file, the table made here) and PostgreSQL
(migrations/0003, yoyo). The port, the mail and the projection are projections/
notifications.py; the columns are ``COLUMNS`` there, held to this DDL and the migration by
tests/integration/test_store_schema_contract.py."""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

from projections.notifications import COLUMNS, Mail, MailOutbox

TABLE = "mail_outbox"


def _values(mail: Mail, time: Callable[[datetime | None], Any]) -> tuple[Any, ...]:
    return (mail.id, mail.kind, mail.recipient, mail.language, json.dumps(mail.params),
            mail.state, mail.attempts, time(mail.next_attempt_at), time(mail.sent_at),
            mail.last_error)


def _mail(row: Any) -> Mail:
    data = dict(zip(COLUMNS, row, strict=True))
    data["params"] = json.loads(data["params"])
    for key in ("next_attempt_at", "sent_at"):
        if isinstance(data[key], str):
            data[key] = datetime.fromisoformat(data[key])
    return Mail(**data)


class _SqlMailOutbox(MailOutbox):
    """The statements both stores share, in their driver's placeholder and time format."""

    placeholder = "?"

    @abstractmethod
    def _execute(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]: ...

    def _time(self, value: datetime | None) -> Any:
        return value

    def due(self, now: datetime, limit: int = 100) -> list[Mail]:
        p = self.placeholder
        return [_mail(r) for r in self._execute(
            f"SELECT {', '.join(COLUMNS)} FROM mail_outbox WHERE state = 'pending' "  # noqa: S608
            f"AND next_attempt_at <= {p} ORDER BY next_attempt_at, id LIMIT {int(limit)}",
            (self._time(now),))]

    def all(self) -> list[Mail]:
        return [_mail(r) for r in self._execute(
            f"SELECT {', '.join(COLUMNS)} FROM mail_outbox ORDER BY id", ())]  # noqa: S608

    def mark_sent(self, mail_id: str, at: datetime) -> None:
        p = self.placeholder
        self._execute(f"UPDATE mail_outbox SET state = 'sent', sent_at = {p} "  # noqa: S608
                      f"WHERE id = {p}", (self._time(at), mail_id))

    def mark_failed(self, mail_id: str, attempts: int, retry_at: datetime, error: str,
                    give_up: bool) -> None:
        p = self.placeholder
        self._execute(f"UPDATE mail_outbox SET attempts = {p}, next_attempt_at = {p}, "  # noqa: S608
                      f"last_error = {p}, state = {p} WHERE id = {p}",
                      (attempts, self._time(retry_at), error[:500],
                       "failed" if give_up else "pending", mail_id))


class SQLiteMailOutbox(SQLiteTrackingRecorder, _SqlMailOutbox):
    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                "CREATE TABLE IF NOT EXISTS mail_outbox (id TEXT PRIMARY KEY, kind TEXT, "
                "recipient TEXT, language TEXT, params TEXT, state TEXT, attempts INTEGER, "
                "next_attempt_at TEXT, sent_at TEXT, last_error TEXT)",
                "CREATE INDEX IF NOT EXISTS mail_outbox_due ON mail_outbox "
                "(state, next_attempt_at)"]

    def _time(self, value: datetime | None) -> Any:
        return value.isoformat() if value is not None else None

    def add(self, mails: list[Mail], tracking: Tracking | None) -> int:
        added = 0
        with self.datastore.transaction(commit=True) as c:
            for mail in mails:
                c.execute(f"INSERT OR IGNORE INTO mail_outbox VALUES ({','.join('?' * 10)})",  # noqa: S608
                          _values(mail, self._time))
                c.execute("SELECT changes()")
                added += int(c.fetchone()[0])
            if tracking is not None:
                self._insert_tracking(c, tracking)
        return added

    def _execute(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=True) as c:
            c.execute(sql, args)
            return [tuple(r) for r in c.fetchall()] if sql.lstrip().startswith("SELECT") else []


class PostgresMailOutbox(PostgresTrackingRecorder, _SqlMailOutbox):
    """The ``mail_outbox`` table from migrations/0003 (yoyo)."""

    placeholder = "%s"

    def add(self, mails: list[Mail], tracking: Tracking | None) -> int:
        added = 0
        with self.datastore.transaction(commit=True) as curs:
            for mail in mails:
                curs.execute(f"INSERT INTO mail_outbox ({', '.join(COLUMNS)}) VALUES "  # noqa: S608
                             f"({', '.join(['%s'] * 10)}) ON CONFLICT (id) DO NOTHING",
                             _values(mail, self._time), prepare=False)
                added += curs.rowcount
            if tracking is not None:
                self._insert_tracking(curs, tracking)
        return added

    def _execute(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(sql, args, prepare=False)
            if sql.lstrip().startswith("SELECT"):
                return [tuple(r.values()) for r in curs.fetchall()]
            return []
