"""How every projection is fed from the log it follows: ``catch_up``, the one way (``audit
replay`` rebuilds from position 0 with the projections' own ``process_event`` too, in bulk:
adapters/audit/replay.py)."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.projection import Projection

from ca_core.eventmodel import read_log

#: log events per transaction for a projection that takes pages (``process_page``)
PAGE = 500


def catch_up(projection: Projection[Any], source: Any) -> int:
    """Feed the projection everything of ``source`` (an application) it has not seen; returns
    the count.

    A projection with ``process_page`` (the status view, the OCSP answers) takes a page of
    events per transaction; others (the outbox) one event per transaction. Another process on
    the same view (a running ``serve`` beside a portal process or a CLI command) may record a
    position first: its tracking then collides with ours, the view kept its rows, and we read
    on from where it got — nothing is applied twice.
    """
    count = 0
    page_of = getattr(projection, "process_page", None)
    while True:
        start = (projection.view.max_tracking_id(source.name) or 0) + 1
        position = start
        page: list[tuple[int, Any]] = []
        try:
            for position, event in read_log(source, topics=projection.topics, start=start):
                if page_of is None:
                    projection.process_event(event, Tracking(source.name, position))
                    count += 1
                    continue
                page.append((position, event))
                if len(page) == PAGE:
                    page_of(page, source.name)
                    count, page = count + len(page), []
            if page:
                page_of(page, source.name)
                count += len(page)
        except IntegrityError:
            if (projection.view.max_tracking_id(source.name) or 0) < position:
                raise  # not another catch-up ahead of us: a real constraint violation
        else:
            return count
