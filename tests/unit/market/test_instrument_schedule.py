"""When the instrument registry counts as stale, and when beat refreshes it (IST, not UTC)."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import celeryconfig
from app.market.instrument_refresh import IST, is_stale, latest_dump_time


def ist(*args) -> datetime:
    return datetime(*args, tzinfo=IST)


def test_the_latest_dump_is_the_last_0800_ist():
    assert latest_dump_time(ist(2026, 11, 30, 7, 59)) == ist(2026, 11, 29, 8, 0)
    assert latest_dump_time(ist(2026, 11, 30, 8, 0)) == ist(2026, 11, 30, 8, 0)
    # 23:00 UTC is already the next morning in India.
    assert latest_dump_time(datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)) == ist(2026, 11, 30, 8, 0)
    assert latest_dump_time(datetime(2026, 12, 1, 2, 31, tzinfo=timezone.utc)) == ist(2026, 12, 1, 8, 0)


def test_a_registry_loaded_before_the_latest_dump_is_stale():
    now = ist(2026, 11, 30, 10, 0)
    assert is_stale(None, now)
    assert is_stale(ist(2026, 11, 30, 7, 59), now)
    assert not is_stale(ist(2026, 11, 30, 8, 1), now)
    assert not is_stale(ist(2026, 11, 30, 7, 59), ist(2026, 11, 30, 7, 59, 30))
    # Naive times from the database are UTC: 02:31 UTC is 08:01 IST.
    assert not is_stale(datetime(2026, 11, 30, 2, 31), now)
    assert is_stale(datetime(2026, 11, 30, 2, 29), now)


def next_run(schedule, last_run: datetime, now: datetime) -> datetime:
    schedule = copy.copy(schedule)
    schedule.nowfun = lambda: now
    return (now + schedule.remaining_estimate(last_run)).astimezone(IST)


def test_beat_refreshes_at_0815_ist_on_trading_days():
    daily = celeryconfig.beat_schedule["refresh-instruments-daily"]
    assert daily["task"] == "workers.tasks.maintenance.refresh_instruments"
    schedule = daily["schedule"]
    # Monday 07:00 IST: today at 08:15 IST (02:45 UTC), not 24 h after the process started.
    monday = ist(2026, 11, 30, 7, 0)
    assert next_run(schedule, monday, monday) == ist(2026, 11, 30, 8, 15)
    # Friday after the refresh: the next one is Monday's.
    friday = ist(2026, 12, 4, 8, 16)
    assert next_run(schedule, friday, friday) == ist(2026, 12, 7, 8, 15)
    # Due when beat was down through 08:15.
    due, _ = _is_due(schedule, last_run=ist(2026, 11, 27, 8, 15), now=ist(2026, 11, 30, 9, 0))
    assert due


def _is_due(schedule, last_run, now):
    schedule = copy.copy(schedule)
    schedule.nowfun = lambda: now
    return schedule.is_due(last_run)


def test_the_schedule_survives_beats_shelve():
    import pickle

    schedule = celeryconfig.beat_schedule["refresh-instruments-daily"]["schedule"]
    restored = pickle.loads(pickle.dumps(schedule))
    assert type(restored) is type(schedule) and restored.tz == IST
    assert (restored.hour, restored.minute) == ({8}, {15})
    assert timedelta(0) < next_run(restored, ist(2026, 11, 30, 7, 0), ist(2026, 11, 30, 7, 0)) - ist(2026, 11, 30, 7, 0)
