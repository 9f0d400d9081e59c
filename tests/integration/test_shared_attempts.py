"""Attempt limits shared through the store, on SQLite (two handles on one file, as two
processes on one host) and on PostgreSQL (two pools, as two hosts)."""

from __future__ import annotations

import time
from pathlib import Path

from adapters.storage.attempts import shared_attempts
from adapters.storage.migrate import apply_migrations


def test_two_handles_share_the_count_and_the_window_slides(tmp_path: Path,
                                                          database_url: str) -> None:
    if database_url:
        apply_migrations(database_url)
    first, second = (shared_attempts(database_url, tmp_path, 3, 0.5) for _ in range(2))
    try:
        assert [first.allow("198.51.100.7"), second.allow("198.51.100.7"),
                first.allow("198.51.100.7")] == [True] * 3
        assert not second.allow("198.51.100.7") and not first.allow("198.51.100.7")
        assert first.allow("203.0.113.1"), "another client has its own count"
        time.sleep(0.6)  # the window (0.5 s) has passed: evidence is the clock, nothing else
        assert second.allow("198.51.100.7")
    finally:
        first.close()
        second.close()
    if not database_url:
        assert (tmp_path / "portal-attempts.sqlite").stat().st_mode & 0o077 == 0
