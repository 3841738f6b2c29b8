"""Batch legs (an iron condor from the option chain) and broker positions, for batch tests."""
from __future__ import annotations


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
    rows = kite.positions()["net"]
    return {s: sum(int(r["quantity"]) for r in rows if r["tradingsymbol"] == s) for s in symbols}
