"""The broker's clocks.

`kite_time` stamps orders and trades with the real IST wall clock (19 characters, the only form the
client parses). `now()` is the *session* clock: market hours and access-token expiry read it, and tests
move it with `POST /_sim/settings {"now": "2026-12-01T09:14:00+05:30"}` (`null` returns to real time)
so that 06:00 IST or the 09:15 open can be reached without waiting for them.
"""
from __future__ import annotations

import time
from datetime import datetime

from .expiries import IST

_offset_s = 0.0


def kite_time(epoch: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if epoch is None else epoch, IST).strftime("%Y-%m-%d %H:%M:%S")


def now() -> float:
    """Epoch seconds on the session clock (real time unless a test moved it)."""
    return time.time() + _offset_s


def now_ist() -> datetime:
    return datetime.fromtimestamp(now(), IST)


def set_now(when: str | None) -> None:
    """Move the session clock to an ISO-8601 instant (naive means IST); None returns to real time."""
    global _offset_s
    if when is None:
        _offset_s = 0.0
        return
    moment = datetime.fromisoformat(when)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=IST)
    _offset_s = moment.timestamp() - time.time()


def is_moved() -> bool:
    return _offset_s != 0.0
