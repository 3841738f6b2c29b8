"""Timestamps as the API writes them (app/core/timestamps.py): UTC, milliseconds, a Z."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from app.core.timestamps import iso


def test_none_stays_none():
    assert iso(None) is None


def test_utc_with_milliseconds_and_a_z():
    assert iso(datetime(2030, 1, 31, 9, 15, 0, 123456, tzinfo=timezone.utc)) == "2030-01-31T09:15:00.123Z"
    assert iso(datetime(2030, 1, 31, 9, 15, tzinfo=timezone.utc)) == "2030-01-31T09:15:00.000Z"


def test_naive_times_are_utc():
    """What the database hands back without a zone is UTC."""
    assert iso(datetime(2030, 1, 31, 9, 15, 1)) == "2030-01-31T09:15:01.000Z"


def test_other_zones_are_converted_to_utc():
    ist = datetime(2030, 1, 31, 14, 45, 30, 500000, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert iso(ist) == "2030-01-31T09:15:30.500Z"
    assert iso(datetime(2030, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))) == "2029-12-31T23:30:00.000Z"
