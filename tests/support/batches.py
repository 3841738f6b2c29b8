"""Batch legs (an iron condor from the option chain), broker positions, and a test's own broker
calls, for batch tests."""
from __future__ import annotations

import time

from kiteconnect import exceptions as kite_errors


def leg(instrument, side: str, lots: int = 1, **extra) -> dict:
    body = {"exchange": instrument.exchange, "tradingsymbol": instrument.tradingsymbol, "transaction_type": side,
            "quantity": instrument.lot_size * lots, "product": "NRML", "order_type": "MARKET"}
    body.update(extra)
    return body


def iron_condor(chain) -> list[dict]:
    by_key, strikes = chain
    mid = len(strikes) // 2
    return [leg(by_key[(strikes[mid - 4], "PE")], "BUY"), leg(by_key[(strikes[mid - 2], "PE")], "SELL"),
            leg(by_key[(strikes[mid + 2], "CE")], "SELL"), leg(by_key[(strikes[mid + 4], "CE")], "BUY")]


def net_positions(kite, symbols) -> dict[str, int]:
    rows = within_rate_limit(kite.positions)["net"]
    return {s: sum(int(r["quantity"]) for r in rows if r["tradingsymbol"] == s) for s in symbols}


def within_rate_limit(call, attempts: int = 5):
    """A test's own call on a service account's api key, tried again a second later while Kite's 10
    non-order calls a second are used up (the service's worker and margin check share them)."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except kite_errors.NetworkException as exc:
            if exc.code != 429 or attempt == attempts:
                raise
            time.sleep(1.0)
