"""Timestamps as the API and its messages write them."""
from __future__ import annotations

from datetime import datetime, timezone


def iso(at: datetime | None) -> str | None:
    """UTC ISO-8601 with milliseconds and a Z, as in every API body and message."""
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
