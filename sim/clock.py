"""Kite's timestamps: IST wall clock as exactly 19 characters, the only form the client parses."""
from __future__ import annotations

import time
from datetime import datetime

from .expiries import IST


def kite_time(epoch: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if epoch is None else epoch, IST).strftime("%Y-%m-%d %H:%M:%S")
