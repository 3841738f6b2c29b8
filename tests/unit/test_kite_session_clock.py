"""When Kite ends a token: the first 06:00 IST after it was issued."""
from datetime import datetime, timezone

from app.kite_session.state import next_daily_expiry


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_a_token_issued_before_06_00_ist_ends_the_same_morning():
    assert next_daily_expiry(utc("2026-12-01T00:29:59")) == utc("2026-12-01T00:30:00")


def test_a_token_issued_at_or_after_06_00_ist_ends_the_next_morning():
    assert next_daily_expiry(utc("2026-12-01T00:30:00")) == utc("2026-12-02T00:30:00")
    assert next_daily_expiry(utc("2026-12-01T10:00:00")) == utc("2026-12-02T00:30:00")
    assert next_daily_expiry(utc("2026-12-31T20:00:00")) == utc("2027-01-01T00:30:00")  # 01:30 IST, new year
