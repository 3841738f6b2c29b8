"""Year fractions (ACT/365) from now to an NSE expiry's close, 15:30 IST."""
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import numpy as np

IST = ZoneInfo("Asia/Kolkata")
EXPIRY_CLOSE = time(15, 30)
SECONDS_PER_YEAR = 365.0 * 86400.0
# 15:30 IST as an offset from UTC midnight of the same date (IST has had no DST since 1945).
_CLOSE_AFTER_UTC_MIDNIGHT = np.timedelta64(
    int((datetime.combine(date(2000, 1, 1), EXPIRY_CLOSE, IST)
         - datetime(2000, 1, 1, tzinfo=timezone.utc)).total_seconds()), "s")


def time_to_expiry(expiry, now=None):
    """Years (ACT/365) from `now` to 15:30 IST on each expiry date, never negative.

    `expiry`: a date, a numpy datetime64, an ISO date string, or an array/list
    of them (a datetime counts by its IST date). `now`: an aware datetime,
    default the current time. Returns a float for one expiry, else an array.
    """
    if now is None:
        now = datetime.now(timezone.utc)
    if now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    now_utc = np.datetime64(now.astimezone(timezone.utc).replace(tzinfo=None), "us")
    if isinstance(expiry, datetime):
        expiry = (expiry.astimezone(IST) if expiry.utcoffset() is not None else expiry).date()
    days = np.asarray(expiry, dtype="datetime64[D]")
    seconds = (days + _CLOSE_AFTER_UTC_MIDNIGHT - now_utc) / np.timedelta64(1, "s")
    years = np.maximum(seconds / SECONDS_PER_YEAR, 0.0)
    return float(years) if years.ndim == 0 else years
