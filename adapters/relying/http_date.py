"""HTTP dates (RFC 9110 §5.6.7) for the relying parties' caching headers."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime


def http_date(moment: datetime) -> str:
    """An HTTP date (RFC 9110 §5.6.7)."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)
