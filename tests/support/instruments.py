"""A few instruments as the broker's dump describes them, for tests that need a registry but no
database: `InstrumentRegistry.of(SAMPLE)` (the `instrument_registry` fixture of tests/unit)."""
from __future__ import annotations

from datetime import date

from app.market.instruments import InstrumentInfo

EXPIRY = date(2030, 1, 31)

INFY = InstrumentInfo(408065, 1594, "INFY", "INFOSYS", "NSE", "NSE", "EQ", None, 0.0, 0.05, 1)
NIFTY_INDEX = InstrumentInfo(256265, 1001, "NIFTY 50", "NIFTY 50", "NSE", "INDICES", "EQ", None, 0.0, 0.05, 1)
NIFTY_FUT = InstrumentInfo(9000, 35, "NIFTY30JANFUT", "NIFTY", "NFO", "NFO-FUT", "FUT", EXPIRY, 0.0, 0.1, 75)
NIFTY_CE = InstrumentInfo(9101, 36, "NIFTY30JAN24000CE", "NIFTY", "NFO", "NFO-OPT", "CE", EXPIRY, 24000.0, 0.05, 75)
NIFTY_PE = InstrumentInfo(9102, 37, "NIFTY30JAN24000PE", "NIFTY", "NFO", "NFO-OPT", "PE", EXPIRY, 24000.0, 0.05, 75)

SAMPLE = (INFY, NIFTY_INDEX, NIFTY_FUT, NIFTY_CE, NIFTY_PE)
