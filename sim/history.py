"""Historical candles that are the same on every call for a given seed.

Daily closes are a random walk anchored so that the last finished trading day
closes at the instrument's quoted `close`; each day's minutes are a Brownian
bridge between consecutive closes, and today's bridge ends at the live price.
Longer intervals aggregate the minutes, so all intervals agree.
Trading days are Monday–Friday (no holiday calendar), 09:15–15:30 IST.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

import numpy as np

from .expiries import IST

INTERVAL_MINUTES = {"minute": 1, "3minute": 3, "5minute": 5, "10minute": 10, "15minute": 15,
                    "30minute": 30, "60minute": 60, "day": 375}
# Kite's largest range per call for each interval.
MAX_DAYS = {"minute": 60, "3minute": 100, "5minute": 100, "10minute": 100, "15minute": 200,
            "30minute": 200, "60minute": 400, "day": 2000}
SESSION_OPEN = time(9, 15)
SESSION_MINUTES = 375
_ORDINAL_BASE = date(2000, 1, 1).toordinal()


def trading_days(start: date, end: date) -> list[date]:
    days, d = [], start
    while d <= end:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


class History:
    def __init__(self, seed: int, market):
        self.seed = seed
        self.market = market

    def _rng(self, token: int, *salt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, token, *salt])

    def _daily_returns(self, token: int, year: int, daily_vol: float) -> np.ndarray:
        return self._rng(token, 1, year).normal(0.0, daily_vol, 366)

    def _log_close(self, token: int, day: date, anchor_day: date, anchor_close: float, daily_vol: float) -> float:
        """log close of `day` (≤ anchor_day): the anchor less the returns of the trading days after it
        (the same days the forward walk in `candles` adds, so the walk lands on the anchor)."""
        total = 0.0
        for d in trading_days(day + timedelta(days=1), anchor_day):
            total += float(self._daily_returns(token, d.year, daily_vol)[d.timetuple().tm_yday - 1])
        return float(np.log(anchor_close)) - total

    def candles(self, instrument, interval: str, start: datetime, end: datetime, with_oi: bool) -> list[list]:
        market = self.market
        i = instrument.index
        token = instrument.instrument_token
        daily_vol = 0.10 if market.is_option[i] else 0.01
        tick = 0.05
        now = datetime.now(IST)
        today = now.date()
        anchor_day = trading_days(today - timedelta(days=7), today - timedelta(days=1))[-1]
        anchor_close = float(market.close[i])
        step_minutes = INTERVAL_MINUTES[interval]
        tradable = not market.is_index[i]
        lot = int(market.lot[i])
        base_oi = float(market.oi_open[i])

        first_day, last_day = start.date(), min(end.date(), today)
        days = trading_days(first_day, last_day)
        if not days:
            return []
        # The close before the first requested day: walk back to the previous trading day.
        prev_day = trading_days(days[0] - timedelta(days=7), days[0] - timedelta(days=1))[-1]
        log_prev = self._log_close(token, min(prev_day, anchor_day), anchor_day, anchor_close, daily_vol)

        out: list[list] = []
        for day in days:
            if day <= anchor_day:
                returns = self._daily_returns(token, day.year, daily_vol)
                log_close = log_prev + float(returns[day.timetuple().tm_yday - 1])
            else:  # today: the walk ends at the live price
                log_close = float(np.log(max(market.ltp[i], tick)))
            minutes_done = SESSION_MINUTES
            if day == today:
                opened = datetime.combine(day, SESSION_OPEN, IST)
                minutes_done = int(max(0, min(SESSION_MINUTES, (now - opened).total_seconds() // 60)))
            out.extend(self._day_candles(token, day, log_prev, log_close, daily_vol, minutes_done, step_minutes,
                                         interval == "day", start, end, with_oi, tradable, lot, base_oi, tick))
            log_prev = log_close
        return out

    def _day_candles(self, token, day, log_open, log_close, daily_vol, minutes_done, step, is_day, start, end,
                     with_oi, tradable, lot, base_oi, tick) -> list[list]:
        if minutes_done <= 0:
            return []
        rng = self._rng(token, 2, day.toordinal() - _ORDINAL_BASE)
        sigma = daily_vol / np.sqrt(SESSION_MINUTES)
        walk = np.concatenate([[0.0], np.cumsum(rng.normal(0.0, sigma, SESSION_MINUTES))])
        frac = np.linspace(0.0, 1.0, SESSION_MINUTES + 1)
        path = np.exp(log_open + frac * (log_close - log_open) + walk - frac * walk[-1])
        wiggle = np.abs(rng.normal(0.0, sigma / 2, SESSION_MINUTES))
        opens, closes = path[:-1], path[1:]
        highs = np.maximum(opens, closes) * (1 + wiggle)
        lows = np.minimum(opens, closes) * (1 - wiggle)
        volumes = lot * rng.integers(1, 200, SESSION_MINUTES) if tradable else np.zeros(SESSION_MINUTES, np.int64)
        oi = (base_oi * np.exp(np.cumsum(rng.normal(0, 0.002, SESSION_MINUTES)))).astype(np.int64) if tradable \
            else np.zeros(SESSION_MINUTES, np.int64)

        n = minutes_done
        groups = np.arange(n) // step
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        ends = np.r_[starts[1:], n]
        session_start = datetime.combine(day, SESSION_OPEN, IST)
        candles = []
        for a, b in zip(starts, ends):
            stamp = datetime.combine(day, time(0, 0), IST) if is_day else session_start + timedelta(minutes=int(a))
            if not (start <= stamp.replace(tzinfo=None) <= end) and not (is_day and start.date() <= day <= end.date()):
                continue
            row = [stamp.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   _tick(opens[a], tick), _tick(highs[a:b].max(), tick), _tick(lows[a:b].min(), tick),
                   _tick(closes[b - 1], tick), int(volumes[a:b].sum())]
            if with_oi:
                row.append(int(oi[b - 1]))
            candles.append(row)
        return candles


def _tick(value: float, tick: float) -> float:
    return round(max(round(value / tick) * tick, tick), 2)
