"""Kite ticker binary packets, built for every instrument at once with NumPy.

Each row is one packet *with* its 2-byte length prefix, so a frame is just
`>H count` followed by rows built for its instruments — no per-packet Python.
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


def build_rows(market, kind: int, idx: np.ndarray) -> np.ndarray:
    """Packets of table kind `kind` for the instruments at `idx`, from the market's current arrays.

    Built per frame for what is sent (not per market step for every instrument): at 100,000
    instruments that is far less work, and the bytes are the same.
    """
    rows = np.empty(len(idx), _DTYPES[kind])
    rows["len"] = PACKET_LENGTHS[kind]
    rows["token"] = market.tokens[idx]
    ltp = paise(market.ltp[idx])
    rows["last_price"] = ltp
    if kind == KIND_LTP:
        return rows
    close = paise(market.close[idx])
    rows["open"] = paise(market.open[idx])
    rows["high"] = paise(market.high[idx])
    rows["low"] = paise(market.low[idx])
    rows["close"] = close
    if kind in (KIND_INDEX_QUOTE, KIND_INDEX_FULL):
        rows["change"] = ltp - close
        if kind == KIND_INDEX_FULL:
            rows["exchange_timestamp"] = market.packet_time
        return rows
    rows["last_quantity"] = market.last_qty[idx]
    rows["average_price"] = paise(market.avg_price[idx])
    rows["volume"] = market.volume[idx]
    rows["buy_quantity"] = market.total_buy[idx]
    rows["sell_quantity"] = market.total_sell[idx]
    if kind == KIND_QUOTE:
        return rows
    rows["last_trade_time"] = market.last_trade_time[idx]
    rows["oi"] = market.oi[idx]
    rows["oi_day_high"] = market.oi_high[idx]
    rows["oi_day_low"] = market.oi_low[idx]
    rows["exchange_timestamp"] = market.packet_time
    depth = rows["depth"]
    depth["quantity"][:, :5] = market.bid_qty[idx]
    depth["price"][:, :5] = paise(market.bid_px[idx])
    depth["orders"][:, :5] = market.bid_orders[idx]
    depth["quantity"][:, 5:] = market.ask_qty[idx]
    depth["price"][:, 5:] = paise(market.ask_px[idx])
    depth["orders"][:, 5:] = market.ask_orders[idx]
    depth["pad"] = 0
    return rows


def packet_kinds(modes: np.ndarray, is_index: np.ndarray) -> np.ndarray:
    """Table kind for each subscription: its mode, shifted to the index layouts for indices."""
    return (modes + np.where(is_index & (modes > LTP), 2, 0)).astype(np.int8)


def build_frame(market, instrument_indices: np.ndarray, kinds: np.ndarray,
                stamp_index: int | None = None, stamp_value: int = 0) -> bytes:
    """One binary frame holding a packet for each (instrument, kind) pair.

    With `stamp_index`, quote/full packets of that instrument carry `stamp_value`
    as last_quantity (the `--stamp-token` send-time marker for benchmarks).
    """
    parts = [int(len(instrument_indices)).to_bytes(2, "big")]
    for kind in np.unique(kinds):
        chosen = instrument_indices[kinds == kind]
        rows = build_rows(market, int(kind), chosen)
        if stamp_index is not None and kind in (KIND_QUOTE, KIND_FULL):
            rows["last_quantity"][chosen == stamp_index] = stamp_value
        parts.append(rows.tobytes())
    return b"".join(parts)
