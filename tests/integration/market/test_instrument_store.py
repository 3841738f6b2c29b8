"""Storing the dump: every field as Kite's CSV gives it, back as the registry reads it (COPY on PostgreSQL,
INSERTs elsewhere). In a transaction rolled back at the end: the registry's table is left as it was."""
from __future__ import annotations

from datetime import date

from sqlalchemy import select


def test_a_stored_dump_reads_back_field_for_field(db_schema):
    from app.core.db import new_session
    from app.market.instruments import _COLUMNS, _infos, store_instruments

    rows = [  # as fetch_dump hands them: text, with the CSV's empty cells
        {"instrument_token": "738561", "exchange_token": "2885", "tradingsymbol": "RELIANCE",
         "name": 'RELIANCE INDUSTRIES, "RIL"', "last_price": "1402.5", "expiry": "", "strike": "0.0",
         "tick_size": "0.1", "lot_size": "1", "instrument_type": "EQ", "segment": "NSE", "exchange": "NSE"},
        {"instrument_token": "9001218", "exchange_token": "35161", "tradingsymbol": "M&M26DEC3200CE", "name": "",
         "last_price": "0", "expiry": "2026-12-29", "strike": "3200", "tick_size": "0.05", "lot_size": "200",
         "instrument_type": "CE", "segment": "NFO-OPT", "exchange": "NFO"},
    ]
    with new_session() as session:
        try:
            assert store_instruments(session, rows) == 2
            stored = {i.instrument_token: i for i in _infos(session.execute(select(*_COLUMNS)))}
            assert len(stored) == 2
            equity, option = stored[738561], stored[9001218]
            assert (equity.name, equity.expiry, equity.tick_size) == ('RELIANCE INDUSTRIES, "RIL"', None, 0.1)
            assert option.name == "" and option.expiry == date(2026, 12, 29)  # empty text, not NULL
            assert (option.tradingsymbol, option.strike, option.lot_size, option.exchange_token) == \
                ("M&M26DEC3200CE", 3200.0, 200, 35161)
        finally:
            session.rollback()
