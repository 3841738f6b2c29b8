"""A small NIFTY option book for the stream's Greeks tests: three strikes, calls and puts, on
one expiry (or a weekly), with the index and a monthly future as underlyings."""
from __future__ import annotations

from datetime import date, datetime, timezone

from tests.support.stream_frames import INDICES, NFO, token
from workers.stream.instruments import InstrumentBook, OptionMeta, UnderlyingTokens

NOW = datetime(2031, 1, 2, 6, 0, tzinfo=timezone.utc)
EXPIRY = date(2031, 1, 30)
WEEKLY = date(2031, 1, 9)
SPOT, FUT = token(256, INDICES), token(9000, NFO)
STRIKES = [19000.0, 19500.0, 20000.0]


def make_book(expiry=EXPIRY):
    options = {}
    for i, strike in enumerate(STRIKES):
        for is_call in (True, False):
            tok = token(9100 + 2 * i + (0 if is_call else 1), NFO)
            options[tok] = OptionMeta(tok, "NIFTY", strike, expiry, is_call, 50, f"NIFTY{int(strike)}{'CE' if is_call else 'PE'}")
    return InstrumentBook(options, {"NIFTY": UnderlyingTokens("NIFTY", SPOT, (FUT,), (EXPIRY,))})
