"""Kite's per-api-key request limits, as fixed calendar windows (how Kite counts them).

Order requests (place, modify, cancel): 10/s, over which Kite answers 429 "Too many requests"; placements
also count towards 400/min and 5,000/day (Kite's 2026 figures), over which the 429 says
"Maximum allowed order requests exceeded". Calls that are then rejected (validation, static IP) count
too. The day is the IST calendar day.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import KiteError, too_many_requests

# Request classes: which limits a route counts against.
ORDER, QUOTE, HISTORICAL, OTHER = "order", "quote", "historical", "other"

IST_OFFSET_S = 19800   # day windows start at midnight IST
ORDER_LIMIT_FIELDS = {"per_second": "order_per_second", "per_minute": "placements_per_minute",
                      "per_day": "placements_per_day"}


def order_count_exceeded() -> KiteError:
    return KiteError("Maximum allowed order requests exceeded", "NetworkException", 429)


@dataclass
class Limits:
    order_per_second: int = 10
    placements_per_minute: int = 400
    placements_per_day: int = 5000
    quote_per_second: int = 1
    historical_per_second: int = 3
    other_per_second: int = 10
    enabled: bool = True


class RateLimiter:
    def __init__(self, limits: Limits):
        self.limits = limits
        self._windows: dict[tuple, list] = {}  # (api_key, name) -> [window index, count]
        self.rejected = 0
        self.rejected_by_class: dict[str, int] = {ORDER: 0, QUOTE: 0, HISTORICAL: 0, OTHER: 0}

    def _admit(self, api_key: str, name: str, limit: int, window_s: int, now: float, offset_s: int = 0) -> bool:
        index = int((now + offset_s) // window_s)
        window = self._windows.setdefault((api_key, name), [index, 0])
        if window[0] != index:
            window[0], window[1] = index, 0
        if window[1] >= limit:
            return False
        window[1] += 1
        return True

    def refusal(self, api_key: str, request_class: str, is_placement: bool = False,
                now: float | None = None) -> KiteError | None:
        """Count the call; the 429 to answer with if it is over a limit, else None."""
        if not self.limits.enabled:
            return None
        now = time.time() if now is None else now
        lim = self.limits
        per_second = {ORDER: lim.order_per_second, QUOTE: lim.quote_per_second,
                      HISTORICAL: lim.historical_per_second, OTHER: lim.other_per_second}[request_class]
        error = None
        if not self._admit(api_key, request_class, per_second, 1, now):
            error = too_many_requests()
        elif is_placement and not (
                self._admit(api_key, "placements/min", lim.placements_per_minute, 60, now)
                and self._admit(api_key, "placements/day", lim.placements_per_day, 86400, now, IST_OFFSET_S)):
            error = order_count_exceeded()
        if error is not None:
            self.rejected += 1
            self.rejected_by_class[request_class] += 1
        return error

    def order_limits(self) -> dict:
        return {name: getattr(self.limits, attr) for name, attr in ORDER_LIMIT_FIELDS.items()}

    def set_order_limits(self, changes) -> None:
        """`{"per_second": N, "per_minute": N, "per_day": N}`, any subset; ValueError names what is wrong
        (and nothing changes)."""
        if not isinstance(changes, dict):
            raise ValueError("order_limits must be an object with per_second, per_minute and/or per_day")
        unknown = set(changes) - set(ORDER_LIMIT_FIELDS)
        if unknown:
            raise ValueError(f"order_limits: unknown field(s) {sorted(unknown)}; "
                             f"use per_second, per_minute, per_day")
        for name, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"order_limits.{name} must be a positive integer")
        for name, value in changes.items():
            setattr(self.limits, ORDER_LIMIT_FIELDS[name], value)
