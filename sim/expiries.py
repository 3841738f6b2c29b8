"""NSE derivative expiry dates and Kite trading-symbol formats (2026 conventions).

Conventions used (NSE circulars in force since September 2025):
- NIFTY weekly options expire every Tuesday; the monthly contract (options and
  futures) expires on the last Tuesday of the month.
- BANKNIFTY has monthly contracts only (weeklies were discontinued in Nov 2024),
  also expiring on the last Tuesday of the month.
- Exchange holidays are not modelled: an expiry never moves to the previous day.
Expiries are always strictly after today's date in IST, so contracts are live.
"""
from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
EXPIRY_WEEKDAY = calendar.TUESDAY
MARKET_CLOSE = time(15, 30)

# Kite's weekly symbols encode the month as one character: 1-9, then O, N, D.
_WEEKLY_MONTH_CODES = "123456789OND"


def today_ist() -> date:
    return datetime.now(IST).date()


def last_weekday_of_month(year: int, month: int, weekday: int = EXPIRY_WEEKDAY) -> date:
    last_day = date(year, month, calendar.monthrange(year, month)[1])
    return last_day - timedelta(days=(last_day.weekday() - weekday) % 7)


def monthly_expiries_after(day: date, count: int) -> list[date]:
    """The next `count` monthly expiries strictly after `day`."""
    found: list[date] = []
    year, month = day.year, day.month
    while len(found) < count:
        expiry = last_weekday_of_month(year, month)
        if expiry > day:
            found.append(expiry)
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return found


def weekly_expiries_after(day: date, count: int) -> list[date]:
    """The next `count` weekly expiries (every Tuesday) strictly after `day`."""
    first = day + timedelta(days=(EXPIRY_WEEKDAY - day.weekday()) % 7 or 7)
    return [first + timedelta(weeks=i) for i in range(count)]


def is_monthly_expiry(expiry: date) -> bool:
    return expiry == last_weekday_of_month(expiry.year, expiry.month)


def expiry_close_epoch(expiry: date) -> float:
    """Epoch seconds of 15:30 IST on the expiry day (when the contract settles)."""
    return datetime.combine(expiry, MARKET_CLOSE, IST).timestamp()


def strike_text(strike: float) -> str:
    return str(int(strike)) if float(strike).is_integer() else f"{strike:g}"


def option_prefix(name: str, expiry: date) -> str:
    """What every option of one expiry's chain starts with: `NIFTY26D01` (weekly), `NIFTY26DEC` (monthly)."""
    yy = f"{expiry.year % 100:02d}"
    if is_monthly_expiry(expiry):
        middle = expiry.strftime("%b").upper()
    else:
        middle = f"{_WEEKLY_MONTH_CODES[expiry.month - 1]}{expiry.day:02d}"
    return f"{name}{yy}{middle}"


def option_symbol(name: str, expiry: date, strike: float, option_type: str) -> str:
    """`NIFTY26D0124000CE` for a weekly, `NIFTY26DEC24000CE` for a monthly."""
    return f"{option_prefix(name, expiry)}{strike_text(strike)}{option_type}"


def future_symbol(name: str, expiry: date) -> str:
    """`NIFTY26DECFUT`."""
    return f"{name}{expiry.year % 100:02d}{expiry.strftime('%b').upper()}FUT"
