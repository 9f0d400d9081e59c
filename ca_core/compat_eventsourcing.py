"""The one place that reaches past eventsourcing's public API (pinned: 9.5.6), for speed.

- ``record``: ``Application.save``'s steps (``_record``, ``_take_snapshots``, ``_notify``)
  for our own ``Batch``, which collects aggregates without the library's per-event runtime
  Protocol checks (ca_core/processing.py).
- ``prepare_insert``: the PostgreSQL recorder's steps before an insert (``_lock_table``,
  ``_notify_channel``), for our array insert that overrides ``_insert_stored_events``
  (adapters/storage/pgrecorder.py).
- adapters/storage/logreader.py and bulkread.py read the library's tables with SQL of their
  own (columns ``notification_id``/``rowid``, ``originator_id``, ``originator_version``,
  ``topic``, ``state``).

``problems()`` says what of this no longer holds; tests/unit/test_compat.py fails on it, so a
new eventsourcing cannot change underneath these without the suite saying so.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

PINNED = "9.5.6"

#: (class path, attribute, parameters it must take) relied upon above
RELIED_UPON: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("eventsourcing.application:Application", "_record", ("self", "processing_event")),
    ("eventsourcing.application:Application", "_take_snapshots", ("self", "processing_event")),
    ("eventsourcing.application:Application", "_notify", ("self", "recordings")),
    ("eventsourcing.postgres:PostgresApplicationRecorder", "_lock_table", ("self", "curs")),
    ("eventsourcing.postgres:PostgresApplicationRecorder", "_notify_channel", ("self", "curs")),
    ("eventsourcing.postgres:PostgresApplicationRecorder", "_insert_stored_events",
     ("self", "curs", "stored_events")),
)


def record(app: Any, batch: Any) -> Any:
    """Store a batch's events (and its tracking) as ``Application.save`` does; returns the
    recordings, for the caller's ``notify`` hook."""
    recordings = app._record(batch)
    app._take_snapshots(batch)
    app._notify(recordings)
    return recordings


def prepare_insert(recorder: Any, curs: Any) -> None:
    """What the PostgreSQL recorder does before inserting events, in its order."""
    recorder._lock_table(curs)
    recorder._notify_channel(curs)


def problems() -> list[str]:
    """What of the above no longer matches the installed eventsourcing (empty: all holds)."""
    import importlib

    found = []
    installed = version("eventsourcing")
    if installed != PINNED:
        found.append(f"eventsourcing {installed} is installed, this module was written "
                     f"against {PINNED}")
    for where, name, parameters in RELIED_UPON:
        module, _, cls = where.partition(":")
        owner = getattr(importlib.import_module(module), cls)
        attribute = getattr(owner, name, None)
        if attribute is None:
            found.append(f"{cls}.{name} is gone")
            continue
        given = tuple(inspect.signature(attribute).parameters)
        if given[:len(parameters)] != parameters:
            found.append(f"{cls}.{name} takes {given}, not {parameters}")
    return found
