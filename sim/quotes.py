"""REST market quotes (`/quote`, `/quote/ltp`, `/quote/ohlc`) from the market arrays."""
from __future__ import annotations

from .clock import kite_time
from .errors import input_error

MAX_QUOTE = 500
MAX_LTP_OHLC = 1000


def _ohlc(m, i: int) -> dict:
    return {"open": float(m.open[i]), "high": float(m.high[i]), "low": float(m.low[i]), "close": float(m.close[i])}


def _resolve(market, keys: list[str], limit: int):
    if not keys:
        raise input_error("No instruments specified (`i`).")
    if len(keys) > limit:
        raise input_error(f"Too many instruments: at most {limit} per request.")
    for key in keys:
        inst = market.by_key.get(key)
        if inst is None and key.isdigit():
            inst = market.by_token.get(int(key))
        if inst is not None:  # Kite leaves unknown instruments out
            yield key, inst.index


def ltp(market, keys: list[str]) -> dict:
    return {k: {"instrument_token": int(market.tokens[i]), "last_price": float(market.ltp[i])}
            for k, i in _resolve(market, keys, MAX_LTP_OHLC)}


def ohlc(market, keys: list[str]) -> dict:
    return {k: {"instrument_token": int(market.tokens[i]), "last_price": float(market.ltp[i]), "ohlc": _ohlc(market, i)}
            for k, i in _resolve(market, keys, MAX_LTP_OHLC)}


def quote(market, keys: list[str]) -> dict:
    now = kite_time(market.updated_at)
    out = {}
    for k, i in _resolve(market, keys, MAX_QUOTE):
        m = market
        close = float(m.close[i])
        last = float(m.ltp[i])
        out[k] = {
            "instrument_token": int(m.tokens[i]), "timestamp": now,
            "last_trade_time": kite_time(int(m.last_trade_time[i])), "last_price": last,
            "last_quantity": int(m.last_qty[i]), "buy_quantity": int(m.total_buy[i]),
            "sell_quantity": int(m.total_sell[i]), "volume": int(m.volume[i]),
            "average_price": round(float(m.avg_price[i]), 2), "oi": int(m.oi[i]),
            "oi_day_high": int(m.oi_high[i]), "oi_day_low": int(m.oi_low[i]),
            "net_change": round(last - close, 2),
            "lower_circuit_limit": round(max(close * 0.6, 0.05), 2) if not m.is_index[i] else 0.0,
            "upper_circuit_limit": round(close * 1.4, 2) if not m.is_index[i] else 0.0,
            "ohlc": _ohlc(m, i),
            "depth": {
                "buy": [{"price": float(m.bid_px[i, j]), "quantity": int(m.bid_qty[i, j]),
                         "orders": int(m.bid_orders[i, j])} for j in range(5)],
                "sell": [{"price": float(m.ask_px[i, j]), "quantity": int(m.ask_qty[i, j]),
                          "orders": int(m.ask_orders[i, j])} for j in range(5)],
            },
        }
    return out
