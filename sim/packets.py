"""Kite ticker binary packets, built for every instrument at once with NumPy.

Each table row is one packet *with* its 2-byte length prefix, so a frame is
just `>H count` followed by rows picked from the tables — no per-packet Python.
Layouts (big-endian) are the ones kiteconnect's `_parse_binary` reads.
"""
from __future__ import annotations

import numpy as np

LTP, QUOTE, FULL = 0, 1, 2
MODES = {"ltp": LTP, "quote": QUOTE, "full": FULL}
# Table kinds: the mode, plus 2 for indices in quote/full (their own 28/32-byte layout).
KIND_LTP, KIND_QUOTE, KIND_FULL, KIND_INDEX_QUOTE, KIND_INDEX_FULL = range(5)

_U2, _U4, _I4 = ">u2", ">u4", ">i4"

LTP_DTYPE = np.dtype([("len", _U2), ("token", _U4), ("last_price", _U4)])
INDEX_QUOTE_DTYPE = np.dtype([("len", _U2), ("token", _U4), ("last_price", _U4), ("high", _U4), ("low", _U4),
                              ("open", _U4), ("close", _U4), ("change", _I4)])
INDEX_FULL_DTYPE = np.dtype(INDEX_QUOTE_DTYPE.descr + [("exchange_timestamp", _U4)])
QUOTE_DTYPE = np.dtype([("len", _U2), ("token", _U4), ("last_price", _U4), ("last_quantity", _U4),
                        ("average_price", _U4), ("volume", _U4), ("buy_quantity", _U4), ("sell_quantity", _U4),
                        ("open", _U4), ("high", _U4), ("low", _U4), ("close", _U4)])
DEPTH_DTYPE = np.dtype([("quantity", _U4), ("price", _U4), ("orders", _U2), ("pad", _U2)])
FULL_DTYPE = np.dtype(QUOTE_DTYPE.descr + [("last_trade_time", _U4), ("oi", _U4), ("oi_day_high", _U4),
                                           ("oi_day_low", _U4), ("exchange_timestamp", _U4),
                                           ("depth", DEPTH_DTYPE, (10,))])

PACKET_LENGTHS = {KIND_LTP: 8, KIND_QUOTE: 44, KIND_FULL: 184, KIND_INDEX_QUOTE: 28, KIND_INDEX_FULL: 32}
_DTYPES = {KIND_LTP: LTP_DTYPE, KIND_QUOTE: QUOTE_DTYPE, KIND_FULL: FULL_DTYPE,
           KIND_INDEX_QUOTE: INDEX_QUOTE_DTYPE, KIND_INDEX_FULL: INDEX_FULL_DTYPE}
for _kind, _dtype in _DTYPES.items():
    assert _dtype.itemsize == PACKET_LENGTHS[_kind] + 2, (_kind, _dtype.itemsize)

HEARTBEAT = b"\x00"
MAX_PACKETS_PER_FRAME = 65535  # the count header is 16 bits


def paise(values) -> np.ndarray:
    return np.rint(np.asarray(values) * 100).astype(np.int64)


def build_tables(market, now: int) -> dict[int, np.ndarray]:
    """One packet per instrument for every kind, from the market's current arrays."""
    n = market.n
    ltp, close = paise(market.ltp), paise(market.close)

    t_ltp = np.empty(n, LTP_DTYPE)
    t_ltp["len"] = 8
    t_ltp["token"] = market.tokens
    t_ltp["last_price"] = ltp

    t_iq = np.empty(n, INDEX_QUOTE_DTYPE)
    t_iq["len"] = 28
    t_iq["token"] = market.tokens
    t_iq["last_price"] = ltp
    t_iq["high"] = paise(market.high)
    t_iq["low"] = paise(market.low)
    t_iq["open"] = paise(market.open)
    t_iq["close"] = close
    t_iq["change"] = ltp - close
    t_if = np.empty(n, INDEX_FULL_DTYPE)
    for name in INDEX_QUOTE_DTYPE.names:
        t_if[name] = t_iq[name]
    t_if["len"] = 32
    t_if["exchange_timestamp"] = now

    t_q = np.empty(n, QUOTE_DTYPE)
    t_q["len"] = 44
    t_q["token"] = market.tokens
    t_q["last_price"] = ltp
    t_q["last_quantity"] = market.last_qty
    t_q["average_price"] = paise(market.avg_price)
    t_q["volume"] = market.volume
    t_q["buy_quantity"] = market.total_buy
    t_q["sell_quantity"] = market.total_sell
    t_q["open"] = paise(market.open)
    t_q["high"] = paise(market.high)
    t_q["low"] = paise(market.low)
    t_q["close"] = close
    t_f = np.empty(n, FULL_DTYPE)
    for name in QUOTE_DTYPE.names:
        t_f[name] = t_q[name]
    t_f["len"] = 184
    t_f["last_trade_time"] = market.last_trade_time
    t_f["oi"] = market.oi
    t_f["oi_day_high"] = market.oi_high
    t_f["oi_day_low"] = market.oi_low
    t_f["exchange_timestamp"] = now
    depth = t_f["depth"]
    depth["quantity"][:, :5] = market.bid_qty
    depth["price"][:, :5] = paise(market.bid_px)
    depth["orders"][:, :5] = market.bid_orders
    depth["quantity"][:, 5:] = market.ask_qty
    depth["price"][:, 5:] = paise(market.ask_px)
    depth["orders"][:, 5:] = market.ask_orders
    depth["pad"] = 0
    return {KIND_LTP: t_ltp, KIND_QUOTE: t_q, KIND_FULL: t_f, KIND_INDEX_QUOTE: t_iq, KIND_INDEX_FULL: t_if}


def packet_kinds(modes: np.ndarray, is_index: np.ndarray) -> np.ndarray:
    """Table kind for each subscription: its mode, shifted to the index layouts for indices."""
    return (modes + np.where(is_index & (modes > LTP), 2, 0)).astype(np.int8)


def build_frame(tables: dict[int, np.ndarray], instrument_indices: np.ndarray, kinds: np.ndarray,
                stamp_index: int | None = None, stamp_value: int = 0) -> bytes:
    """One binary frame holding a packet for each (instrument, kind) pair.

    With `stamp_index`, quote/full packets of that instrument carry `stamp_value`
    as last_quantity (the `--stamp-token` send-time marker for benchmarks).
    """
    parts = [int(len(instrument_indices)).to_bytes(2, "big")]
    for kind in np.unique(kinds):
        chosen = instrument_indices[kinds == kind]
        rows = tables[int(kind)][chosen]  # fancy indexing copies: the tables stay untouched
        if stamp_index is not None and kind in (KIND_QUOTE, KIND_FULL):
            rows["last_quantity"][chosen == stamp_index] = stamp_value
        parts.append(rows.tobytes())
    return b"".join(parts)
