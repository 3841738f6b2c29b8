"""Kite's per-api-key request limits, as fixed calendar windows (how Kite counts them)."""
from __future__ import annotations

import time
from dataclasses import dataclass

# Request classes: which limits a route counts against.
ORDER, QUOTE, HISTORICAL, OTHER = "order", "quote", "historical", "other"


@dataclass
class Limits:
    order_per_second: int = 10
    placements_per_minute: int = 200
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

    def _admit(self, api_key: str, name: str, limit: int, window_s: int, now: float) -> bool:
        index = int(now // window_s)
        window = self._windows.setdefault((api_key, name), [index, 0])
        if window[0] != index:
            window[0], window[1] = index, 0
        if window[1] >= limit:
            return False
        window[1] += 1
        return True

    def admit(self, api_key: str, request_class: str, is_placement: bool = False, now: float | None = None) -> bool:
        """Count the call; False means answer 429."""
        if not self.limits.enabled:
            return True
        now = time.time() if now is None else now
        lim = self.limits
        per_second = {ORDER: lim.order_per_second, QUOTE: lim.quote_per_second,
                      HISTORICAL: lim.historical_per_second, OTHER: lim.other_per_second}[request_class]
        ok = self._admit(api_key, request_class, per_second, 1, now)
        if ok and is_placement:
            ok = (self._admit(api_key, "placements/min", lim.placements_per_minute, 60, now)
                  and self._admit(api_key, "placements/day", lim.placements_per_day, 86400, now))
        if not ok:
            self.rejected += 1
        return ok
