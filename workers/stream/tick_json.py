"""QUOTE and FULL ticks written as JSON text by a compiled loop (the publishing hot path at market scale).

``frames.to_json_texts`` fills a ``%`` template per tick: about 80 numbers go through
Python's formatting for a FULL tick, ~16 µs each tick, which caps one stream process
near 50,000 published ticks/s with nothing else to do. Here one numba loop writes
every tick of a batch into one byte buffer, ~1 µs a tick.

Byte-for-byte the text of ``json.dumps(tick, separators=(",", ":"))`` (tested against it):
- prices are whole paise (the decoder divides Kite's integer paise by 100), and for
  such a value ``repr`` is its shortest round-trip decimal: the integer part, then
  ``.D`` or ``.DD`` without a trailing zero (``.0`` for whole rupees). ``eligible``
  checks that every price of the batch is such a value; other batches take the
  template path.
- ``change`` is an arbitrary float: ``json_numbers.float_texts`` writes it (``repr``'s text), and the
  loop copies that text.
- timestamps come as the few distinct ISO texts of the batch, by index.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from workers.stream.json_numbers import float_texts

DEPTH_LEVELS = 5
PRICE_FIELDS = ("last_price", "average_traded_price", "open", "high", "low", "close")
DEPTH_PRICE_FIELDS = ("bid_price", "ask_price")
LENGTHS = (44, 184)  # QUOTE and FULL packets of tradable instruments


def _piece(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).copy()


# The constant text between the numbers, in writing order (see _write_tick).
_HEAD = _piece('{"tradable":')
_TRUE, _FALSE = _piece("true"), _piece("false")
_MODE_QUOTE = _piece(',"mode":"quote","instrument_token":')
_MODE_FULL = _piece(',"mode":"full","instrument_token":')
_LAST_PRICE = _piece(',"last_price":')
_LTQ = _piece(',"last_traded_quantity":')
_ATP = _piece(',"average_traded_price":')
_VOLUME = _piece(',"volume_traded":')
_TBQ = _piece(',"total_buy_quantity":')
_TSQ = _piece(',"total_sell_quantity":')
_OPEN = _piece(',"ohlc":{"open":')
_HIGH = _piece(',"high":')
_LOW = _piece(',"low":')
_CLOSE = _piece(',"close":')
_CHANGE = _piece('},"change":')
_LTT = _piece(',"last_trade_time":')
_OI = _piece(',"oi":')
_OI_HIGH = _piece(',"oi_day_high":')
_OI_LOW = _piece(',"oi_day_low":')
_ETS = _piece(',"exchange_timestamp":')
_DEPTH_BUY = _piece(',"depth":{"buy":[')
_DEPTH_SELL = _piece('],"sell":[')
_DEPTH_END = _piece("]}")
_LEVEL_QTY = _piece('{"quantity":')
_LEVEL_PRICE = _piece(',"price":')
_LEVEL_ORDERS = _piece(',"orders":')
_LEVEL_END = _piece("}")
_COMMA = _piece(",")
_CLOSE_TICK = _piece("}")
# Longest text of one FULL tick: the pieces plus 80 numbers of at most 21 characters each.
MAX_TICK_BYTES = 2048


@njit(cache=True)
def _put(out, pos, piece):
    for k in range(piece.size):
        out[pos + k] = piece[k]
    return pos + piece.size


@njit(cache=True)
def _put_int(out, pos, value):
    if value < 0:
        out[pos] = 45  # '-'
        pos += 1
        value = -value
    digits = 1
    probe = value
    while probe >= 10:
        probe //= 10
        digits += 1
    end = pos + digits
    for k in range(digits):
        out[end - 1 - k] = 48 + value % 10
        value //= 10
    return end


@njit(cache=True)
def _put_paise(out, pos, paise):
    """repr(paise / 100) for a whole number of paise."""
    if paise < 0:
        out[pos] = 45
        pos += 1
        paise = -paise
    pos = _put_int(out, pos, paise // 100)
    out[pos] = 46  # '.'
    pos += 1
    cents = paise % 100
    if cents % 10 == 0:
        out[pos] = 48 + cents // 10
        return pos + 1
    out[pos] = 48 + cents // 10
    out[pos + 1] = 48 + cents % 10
    return pos + 2


@njit(cache=True)
def _put_range(out, pos, source, start, stop):
    for k in range(start, stop):
        out[pos] = source[k]
        pos += 1
    return pos


@njit(cache=True)
def _write_ticks(full, tradable, token, prices, ints, change_text, change_ends, stamp_text, stamp_ends,
                 stamp_of, depth_qty, depth_paise, depth_orders, out, ends):
    """Write each row's tick (without its closing brace) into `out`; `ends[i]` is where row i stops.

    prices[i]: last_price, average_traded_price, open, high, low, close in paise.
    ints[i]: last_traded_quantity, volume, total_buy, total_sell, oi, oi_day_high, oi_day_low.
    stamp_of[i]: (last_trade_time, exchange_timestamp) as indices into the stamp texts.
    depth_*[i]: 5 bid levels then 5 ask levels.
    """
    pos = 0
    for i in range(token.size):
        pos = _put(out, pos, _HEAD)
        pos = _put(out, pos, _TRUE if tradable[i] else _FALSE)
        pos = _put(out, pos, _MODE_FULL if full else _MODE_QUOTE)
        pos = _put_int(out, pos, token[i])
        pos = _put(out, pos, _LAST_PRICE)
        pos = _put_paise(out, pos, prices[i, 0])
        pos = _put(out, pos, _LTQ)
        pos = _put_int(out, pos, ints[i, 0])
        pos = _put(out, pos, _ATP)
        pos = _put_paise(out, pos, prices[i, 1])
        pos = _put(out, pos, _VOLUME)
        pos = _put_int(out, pos, ints[i, 1])
        pos = _put(out, pos, _TBQ)
        pos = _put_int(out, pos, ints[i, 2])
        pos = _put(out, pos, _TSQ)
        pos = _put_int(out, pos, ints[i, 3])
        pos = _put(out, pos, _OPEN)
        pos = _put_paise(out, pos, prices[i, 2])
        pos = _put(out, pos, _HIGH)
        pos = _put_paise(out, pos, prices[i, 3])
        pos = _put(out, pos, _LOW)
        pos = _put_paise(out, pos, prices[i, 4])
        pos = _put(out, pos, _CLOSE)
        pos = _put_paise(out, pos, prices[i, 5])
        pos = _put(out, pos, _CHANGE)
        pos = _put_range(out, pos, change_text, change_ends[i - 1] if i > 0 else 0, change_ends[i])
        if full:
            s = stamp_of[i, 0]
            pos = _put(out, pos, _LTT)
            pos = _put_range(out, pos, stamp_text, stamp_ends[s - 1] if s > 0 else 0, stamp_ends[s])
            pos = _put(out, pos, _OI)
            pos = _put_int(out, pos, ints[i, 4])
            pos = _put(out, pos, _OI_HIGH)
            pos = _put_int(out, pos, ints[i, 5])
            pos = _put(out, pos, _OI_LOW)
            pos = _put_int(out, pos, ints[i, 6])
            s = stamp_of[i, 1]
            pos = _put(out, pos, _ETS)
            pos = _put_range(out, pos, stamp_text, stamp_ends[s - 1] if s > 0 else 0, stamp_ends[s])
            pos = _put(out, pos, _DEPTH_BUY)
            for level in range(2 * DEPTH_LEVELS):
                if level == DEPTH_LEVELS:
                    pos = _put(out, pos, _DEPTH_SELL)
                elif level > 0:
                    pos = _put(out, pos, _COMMA)
                pos = _put(out, pos, _LEVEL_QTY)
                pos = _put_int(out, pos, depth_qty[i, level])
                pos = _put(out, pos, _LEVEL_PRICE)
                pos = _put_paise(out, pos, depth_paise[i, level])
                pos = _put(out, pos, _LEVEL_ORDERS)
                pos = _put_int(out, pos, depth_orders[i, level])
                pos = _put(out, pos, _LEVEL_END)
            pos = _put(out, pos, _DEPTH_END)
        ends[i] = pos
    return pos


def _paise(values: np.ndarray) -> np.ndarray | None:
    """Whole paise of each price, or None when one is not a whole number of paise (or not finite)."""
    if not np.isfinite(values).all():
        return None
    paise = np.rint(values * 100.0)
    if not (paise / 100.0 == values).all() or np.abs(paise).max(initial=0) >= 2 ** 53:
        return None
    return paise.astype(np.int64)


def _joined(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The texts end to end as ASCII bytes, and where each ends."""
    data = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8)
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    return data, ends


def texts(rows: np.ndarray, length: int, stamp_text) -> list[str] | None:
    """The JSON text of each row (QUOTE: 44, FULL: 184; no closing brace), or None when the
    batch has a price that is not whole paise (then the caller formats it the general way).
    `stamp_text(epoch)` gives a timestamp's JSON text."""
    full = length == 184
    n = len(rows)
    prices = np.empty((n, len(PRICE_FIELDS)), dtype=np.int64)
    for k, name in enumerate(PRICE_FIELDS):
        paise = _paise(rows[name])
        if paise is None:
            return None
        prices[:, k] = paise
    change = rows["change"]
    if not np.isfinite(change).all():
        return None
    int_names = ["last_traded_quantity", "volume_traded", "total_buy_quantity", "total_sell_quantity"]
    if full:
        int_names += ["oi", "oi_day_high", "oi_day_low"]
    ints = np.zeros((n, 7), dtype=np.int64)
    for k, name in enumerate(int_names):
        ints[:, k] = rows[name]
    change_text, change_ends = _joined(float_texts(change))
    if full:
        depth_paise = np.empty((n, 2 * DEPTH_LEVELS), dtype=np.int64)
        for side, name in enumerate(DEPTH_PRICE_FIELDS):
            paise = _paise(rows[name].reshape(-1))
            if paise is None:
                return None
            depth_paise[:, side * DEPTH_LEVELS:(side + 1) * DEPTH_LEVELS] = paise.reshape(n, DEPTH_LEVELS)
        depth_qty = np.concatenate((rows["bid_quantity"], rows["ask_quantity"]), axis=1).astype(np.int64)
        depth_orders = np.concatenate((rows["bid_orders"], rows["ask_orders"]), axis=1).astype(np.int64)
        epochs = np.stack((rows["last_trade_time"], rows["exchange_timestamp"]), axis=1)
        distinct, stamp_of = np.unique(epochs, return_inverse=True)
        stamp_text_bytes, stamp_ends = _joined([stamp_text(int(e)) for e in distinct.tolist()])
        stamp_of = stamp_of.reshape(n, 2).astype(np.int64)
    else:
        depth_paise = depth_qty = depth_orders = np.zeros((n, 2 * DEPTH_LEVELS), dtype=np.int64)
        stamp_text_bytes, stamp_ends = np.zeros(1, np.uint8), np.zeros(1, np.int64)
        stamp_of = np.zeros((n, 2), dtype=np.int64)
    out = np.empty(n * MAX_TICK_BYTES + change_text.size, dtype=np.uint8)
    ends = np.empty(n, dtype=np.int64)
    total = _write_ticks(full, rows["tradable"], rows["instrument_token"].astype(np.int64), prices, ints,
                         change_text, change_ends, stamp_text_bytes, stamp_ends, stamp_of,
                         depth_qty, depth_paise, depth_orders, out, ends)
    text = out[:total].tobytes().decode("ascii")
    starts = [0] + ends[:-1].tolist()
    return [text[a:b] for a, b in zip(starts, ends.tolist())]


def warm_up() -> None:
    """Compile (or load from numba's cache) the writer before the first batch."""
    from workers.stream.frames import TICK_DTYPE, _stamp_text

    rows = np.zeros(1, dtype=TICK_DTYPE)
    for length in LENGTHS:
        rows["packet_length"] = length
        texts(rows, length, _stamp_text)
