"""Decode whole Kite ticker binary frames into NumPy rows.

KiteTicker's ``_parse_binary`` builds a dict per packet with one
``struct.unpack`` per field (~30 µs per full packet). Here compiled loops
cut every waiting frame into packets and write each packet's fields into its
row, in two passes over the bytes.

Wire format (Kite's binary ticker messages; sim/packets.py writes the same): ``>H`` packet count, then per
packet ``>H`` length and the packet; every field is a big-endian unsigned
32-bit integer, except depth ``orders`` (``>H``). Packets of another length
are dropped silently, as KiteTicker does. A frame of 1 byte is a heartbeat.

Rows come out in packet order, so the last row of a token is its newest.

Back out: ``to_kite_ticks`` (KiteTicker's dicts), ``to_json_ticks`` (dicts with
UTC ISO timestamps) and ``to_json_texts`` (the same as compact JSON text, built
from the columns without dicts: the publishing hot path).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
from numba import njit

from workers.stream import tick_json

MODE_LTP, MODE_QUOTE, MODE_FULL = 0, 1, 2
MODE_NAMES = ("ltp", "quote", "full")

SEGMENT_CDS, SEGMENT_BCD, SEGMENT_INDICES, SEGMENT_NCO = 3, 6, 9, 12

DEPTH_LEVELS = 5

TICK_DTYPE = np.dtype(
    [
        ("instrument_token", "<i8"),
        ("packet_length", "<u2"),  # 8, 28, 32, 44 or 184: says which fields are present
        ("mode", "u1"),  # MODE_LTP / MODE_QUOTE / MODE_FULL
        ("tradable", "?"),
        ("last_price", "<f8"),
        ("last_traded_quantity", "<i8"),
        ("average_traded_price", "<f8"),
        ("volume_traded", "<i8"),
        ("total_buy_quantity", "<i8"),
        ("total_sell_quantity", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("change", "<f8"),  # percent, (ltp - close) * 100 / close, 0 when close is 0
        ("last_trade_time", "<i8"),  # epoch seconds (UTC)
        ("oi", "<i8"),
        ("oi_day_high", "<i8"),
        ("oi_day_low", "<i8"),
        ("exchange_timestamp", "<i8"),  # epoch seconds (UTC)
        ("bid_quantity", "<i8", (DEPTH_LEVELS,)),
        ("bid_price", "<f8", (DEPTH_LEVELS,)),
        ("bid_orders", "<i8", (DEPTH_LEVELS,)),
        ("ask_quantity", "<i8", (DEPTH_LEVELS,)),
        ("ask_price", "<f8", (DEPTH_LEVELS,)),
        ("ask_orders", "<i8", (DEPTH_LEVELS,)),
    ]
)

_EMPTY = np.zeros(0, dtype=TICK_DTYPE)


class MalformedFrame(ValueError):
    """The packet count or a packet length runs past the end of the frame."""


def decode_frame(frame: bytes) -> np.ndarray:
    """Every packet of one binary frame as rows of ``TICK_DTYPE``.

    Heartbeats (frames shorter than 2 bytes) give an empty array. Raises
    ``MalformedFrame`` when the frame is truncated; KiteTicker would drop the
    connection there, we let the caller count and skip it.
    """
    if len(frame) < 2:
        return _EMPTY
    rows, malformed = decode_frames([frame])
    if malformed:
        raise MalformedFrame(f"frame of {len(frame)} bytes: its packet count or a packet length runs past its end")
    return rows


def decode_frames(frames: list[bytes]) -> tuple[np.ndarray, int]:
    """The packets of several frames as one array of rows, in order, and how many frames were
    malformed (skipped whole). Two compiled passes over all of them: at market scale a
    connection's frames are small (tens of packets), and decoding each on its own would cost
    its fixed overhead many thousand times a second."""
    parts = [frame for frame in frames if len(frame) >= 2]
    if not parts:
        return _EMPTY, 0
    sizes = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    ends = np.cumsum(sizes)
    buf = np.frombuffer(parts[0] if len(parts) == 1 else b"".join(parts), dtype=np.uint8)
    offsets, lengths, malformed = _scan_frames(buf, ends - sizes, ends)
    if offsets.size == 0:
        return _EMPTY, malformed
    rows = np.zeros(offsets.size, dtype=TICK_DTYPE)  # a field the packet's mode lacks reads 0
    _fill_rows(buf, offsets, lengths, rows)
    return rows, malformed


@njit(cache=True)
def _u16(buf, at):
    return (np.int64(buf[at]) << 8) | np.int64(buf[at + 1])


@njit(cache=True)
def _u32(buf, at):
    return (np.int64(buf[at]) << 24) | (np.int64(buf[at + 1]) << 16) | (np.int64(buf[at + 2]) << 8) \
        | np.int64(buf[at + 3])


@njit(cache=True)
def _scan_frames(buf, starts, ends):
    """(body offset, length) of every packet of a known length, in order, and the number of
    malformed frames (a packet past the frame's end): those are skipped whole. Bytes after a
    frame's last packet are ignored, as KiteTicker does."""
    room = 0  # a packet takes 2 bytes at least: a count past that is malformed, never allocated
    for f in range(starts.size):
        room += min(_u16(buf, starts[f]), (ends[f] - starts[f] - 2) // 2)
    offsets = np.empty(room, dtype=np.int64)
    lengths = np.empty(room, dtype=np.int64)
    n = malformed = 0
    for f in range(starts.size):
        end, first = ends[f], n
        count, pos = _u16(buf, starts[f]), starts[f] + 2
        for _ in range(count):
            if pos + 2 > end or pos + 2 + _u16(buf, pos) > end:
                n = first
                malformed += 1
                break
            length = _u16(buf, pos)
            pos += 2
            if length == 8 or length == 28 or length == 32 or length == 44 or length == 184:
                offsets[n], lengths[n] = pos, length
                n += 1
            pos += length
    return offsets[:n], lengths[:n], malformed


@njit(cache=True)
def _fill_rows(buf, offsets, lengths, rows):
    """Each packet into its row, a row at a time: a structured array written column by column
    touches every row's cache lines once per field (tens of MB per batch at market scale)."""
    for i in range(offsets.size):
        at, length, row = offsets[i], lengths[i], rows[i]
        token = _u32(buf, at)
        segment = token & 0xFF
        if segment == SEGMENT_CDS:
            divisor = 10_000_000.0
        elif segment == SEGMENT_BCD or segment == SEGMENT_NCO:
            divisor = 10_000.0
        else:
            divisor = 100.0
        row.instrument_token = token
        row.packet_length = length
        row.tradable = segment != SEGMENT_INDICES
        row.last_price = _u32(buf, at + 4) / divisor
        if length == 8:
            row.mode = MODE_LTP
            continue
        if length == 28 or length == 32:
            row.mode = MODE_QUOTE if length == 28 else MODE_FULL
            # Index packets carry high, low, open, close (not open first).
            row.high = _u32(buf, at + 8) / divisor
            row.low = _u32(buf, at + 12) / divisor
            row.open = _u32(buf, at + 16) / divisor
            row.close = _u32(buf, at + 20) / divisor
            if length == 32:
                row.exchange_timestamp = _u32(buf, at + 28)
        else:
            row.mode = MODE_QUOTE if length == 44 else MODE_FULL
            row.last_traded_quantity = _u32(buf, at + 8)
            row.average_traded_price = _u32(buf, at + 12) / divisor
            row.volume_traded = _u32(buf, at + 16)
            row.total_buy_quantity = _u32(buf, at + 20)
            row.total_sell_quantity = _u32(buf, at + 24)
            row.open = _u32(buf, at + 28) / divisor
            row.high = _u32(buf, at + 32) / divisor
            row.low = _u32(buf, at + 36) / divisor
            row.close = _u32(buf, at + 40) / divisor
            if length == 184:
                row.last_trade_time = _u32(buf, at + 44)
                row.oi = _u32(buf, at + 48)
                row.oi_day_high = _u32(buf, at + 52)
                row.oi_day_low = _u32(buf, at + 56)
                row.exchange_timestamp = _u32(buf, at + 60)
                for level in range(DEPTH_LEVELS):  # 10 entries of 12 bytes: quantity, price, orders (>H), pad
                    bid, ask = at + 64 + 12 * level, at + 64 + 12 * (level + DEPTH_LEVELS)
                    row.bid_quantity[level] = _u32(buf, bid)
                    row.bid_price[level] = _u32(buf, bid + 4) / divisor
                    row.bid_orders[level] = _u16(buf, bid + 8)
                    row.ask_quantity[level] = _u32(buf, ask)
                    row.ask_price[level] = _u32(buf, ask + 4) / divisor
                    row.ask_orders[level] = _u16(buf, ask + 8)
        close = row.close
        row.change = (row.last_price - close) * 100 / close if close != 0 else 0.0


def warm_up() -> None:
    """Compile (or load from numba's cache) the decoder and the JSON writer before the first frame."""
    decode_frames([b"\x00\x00"])
    tick_json.warm_up()


# ---------------------------------------------------------------------------
# Rows back to dicts


def to_kite_ticks(rows: np.ndarray) -> list[dict]:
    """The tick dicts ``KiteTicker._parse_binary`` would have produced.

    Timestamps are naive local datetimes, exactly as KiteTicker makes them
    (``datetime.fromtimestamp``); use ``to_json_ticks`` (dicts) or
    ``to_json_texts`` (JSON text, what the batcher publishes) for publishing.
    """
    return _to_dicts(rows, _local_datetime)


def to_json_ticks(rows: np.ndarray) -> list[dict]:
    """Tick dicts ready for ``json.dumps``: same keys as KiteTicker's, with
    timestamps as ISO-8601 UTC strings (``2025-10-31T03:45:30Z``) so no
    consumer depends on the stream process's ``TZ``."""
    return _to_dicts(rows, _iso_utc)


def _local_datetime(epoch: int):
    try:
        return datetime.fromtimestamp(epoch)
    except (OverflowError, OSError, ValueError):
        return None


def _iso_utc(epoch: int):
    try:
        return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return None


def _to_dicts(rows: np.ndarray, stamp) -> list[dict]:
    # Columns to Python lists once: much cheaper than indexing numpy scalars per field.
    col = {name: rows[name].tolist() for name in TICK_DTYPE.names}
    ticks = []
    for i, length in enumerate(col["packet_length"]):
        tick = {
            "tradable": col["tradable"][i],
            "mode": MODE_NAMES[col["mode"][i]],
            "instrument_token": col["instrument_token"][i],
            "last_price": col["last_price"][i],
        }
        if length in (28, 32):
            tick["ohlc"] = {"high": col["high"][i], "low": col["low"][i], "open": col["open"][i], "close": col["close"][i]}
            tick["change"] = col["change"][i]
            if length == 32:
                tick["exchange_timestamp"] = stamp(col["exchange_timestamp"][i])
        elif length in (44, 184):
            tick["last_traded_quantity"] = col["last_traded_quantity"][i]
            tick["average_traded_price"] = col["average_traded_price"][i]
            tick["volume_traded"] = col["volume_traded"][i]
            tick["total_buy_quantity"] = col["total_buy_quantity"][i]
            tick["total_sell_quantity"] = col["total_sell_quantity"][i]
            tick["ohlc"] = {"open": col["open"][i], "high": col["high"][i], "low": col["low"][i], "close": col["close"][i]}
            tick["change"] = col["change"][i]
            if length == 184:
                tick["last_trade_time"] = stamp(col["last_trade_time"][i])
                tick["oi"] = col["oi"][i]
                tick["oi_day_high"] = col["oi_day_high"][i]
                tick["oi_day_low"] = col["oi_day_low"][i]
                tick["exchange_timestamp"] = stamp(col["exchange_timestamp"][i])
                tick["depth"] = {
                    "buy": [
                        {"quantity": q, "price": p, "orders": o}
                        for q, p, o in zip(col["bid_quantity"][i], col["bid_price"][i], col["bid_orders"][i])
                    ],
                    "sell": [
                        {"quantity": q, "price": p, "orders": o}
                        for q, p, o in zip(col["ask_quantity"][i], col["ask_price"][i], col["ask_orders"][i])
                    ],
                }
        ticks.append(tick)
    return ticks


# ---------------------------------------------------------------------------
# Rows straight to JSON text (the publishing hot path)
#
# ``json.dumps(to_json_ticks(rows)[i], separators=(",", ":"))`` without the
# dicts: one ``%`` template per packet length, filled from whole columns
# (``tolist`` once per column, ``zip`` builds each row's tuple in C). Floats
# go through ``%r``, which is ``float.__repr__`` exactly as ``json.dumps``
# writes them, ints through ``%d``, and the two timestamps of a FULL packet
# come from a cache of second-resolution ISO strings, so the text is
# byte-for-byte what ``json.dumps`` of the dict gives (tested).

_Q = '"quantity":%d,"price":%r,"orders":%d'
_DEPTH = ('"depth":{"buy":[' + ",".join("{" + _Q + "}" for _ in range(DEPTH_LEVELS)) + '],"sell":['
          + ",".join("{" + _Q + "}" for _ in range(DEPTH_LEVELS)) + "]}")
_HEAD = '{"tradable":%s,"mode":"MODE","instrument_token":%d,"last_price":%r'
_QUOTE = ('"last_traded_quantity":%d,"average_traded_price":%r,"volume_traded":%d,"total_buy_quantity":%d,'
          '"total_sell_quantity":%d,"ohlc":{"open":%r,"high":%r,"low":%r,"close":%r},"change":%r')
# packet length -> (template, columns in template order; "*stamp" = ISO timestamp, "*depth" = 30 depth columns)
_TEMPLATES: dict[int, tuple[str, tuple[str, ...]]] = {
    8: (_HEAD.replace("MODE", "ltp"), ("tradable", "instrument_token", "last_price")),
    28: (_HEAD.replace("MODE", "quote") + ',"ohlc":{"high":%r,"low":%r,"open":%r,"close":%r},"change":%r',
         ("tradable", "instrument_token", "last_price", "high", "low", "open", "close", "change")),
    32: (_HEAD.replace("MODE", "full") + ',"ohlc":{"high":%r,"low":%r,"open":%r,"close":%r},"change":%r'
         ',"exchange_timestamp":%s',
         ("tradable", "instrument_token", "last_price", "high", "low", "open", "close", "change",
          "*exchange_timestamp")),
    44: (_HEAD.replace("MODE", "quote") + "," + _QUOTE,
         ("tradable", "instrument_token", "last_price", "last_traded_quantity", "average_traded_price",
          "volume_traded", "total_buy_quantity", "total_sell_quantity", "open", "high", "low", "close", "change")),
    184: (_HEAD.replace("MODE", "full") + "," + _QUOTE + ',"last_trade_time":%s,"oi":%d,"oi_day_high":%d,'
          '"oi_day_low":%d,"exchange_timestamp":%s,' + _DEPTH,
          ("tradable", "instrument_token", "last_price", "last_traded_quantity", "average_traded_price",
           "volume_traded", "total_buy_quantity", "total_sell_quantity", "open", "high", "low", "close", "change",
           "*last_trade_time", "oi", "oi_day_high", "oi_day_low", "*exchange_timestamp", "*depth")),
}
_FLOAT_FIELDS = tuple(name for name in TICK_DTYPE.names if TICK_DTYPE[name].base.kind == "f")
_BOOL_TEXT = np.array(["false", "true"], dtype=object)
_STAMP_CACHE: dict[int, str] = {}  # epoch second -> '"...Z"' (JSON, quotes included) or 'null'
_STAMP_CACHE_MAX = 100_000


def _stamp_text(epoch: int) -> str:
    text = _STAMP_CACHE.get(epoch)
    if text is None:
        iso = _iso_utc(epoch)
        text = "null" if iso is None else f'"{iso}"'
        if len(_STAMP_CACHE) >= _STAMP_CACHE_MAX:
            _STAMP_CACHE.clear()
        _STAMP_CACHE[epoch] = text
    return text


def _stamp_column(epochs: np.ndarray) -> list[str]:
    """JSON text of each timestamp; a batch has few distinct seconds, so format those only."""
    first = epochs[0]
    if (epochs == first).all():
        return [_stamp_text(int(first))] * len(epochs)
    distinct, inverse = np.unique(epochs, return_inverse=True)
    texts = np.array([_stamp_text(e) for e in distinct.tolist()], dtype=object)
    return texts[inverse].tolist()


def to_json_texts(rows: np.ndarray, close: bool = True) -> list[str]:
    """Each row as compact JSON text, equal to ``json.dumps(tick, separators=(",", ":"))``
    of ``to_json_ticks(rows)``. With ``close=False`` the final ``}`` is left off,
    so the caller can append more keys (``,"key":value``) and close it itself."""
    n = len(rows)
    if n == 0:
        return []
    lengths = rows["packet_length"]
    first = lengths[0]
    if (lengths == first).all():
        return _texts_of_group(rows, int(first), close)
    out: list[str] = [""] * n
    for length in np.unique(lengths).tolist():
        where = np.flatnonzero(lengths == length)
        for i, text in zip(where.tolist(), _texts_of_group(rows[where], length, close)):
            out[i] = text
    return out


def _texts_of_group(rows: np.ndarray, length: int, close: bool) -> list[str]:
    spec = _TEMPLATES.get(length)
    if spec is None or not all(np.isfinite(rows[name]).all() for name in _FLOAT_FIELDS):
        # Unknown layout or NaN/inf (never from decode_frame): let json.dumps decide.
        texts = [json.dumps(t, separators=(",", ":")) for t in to_json_ticks(rows)]
        return texts if close else [t[:-1] for t in texts]
    if length in tick_json.LENGTHS:
        texts = tick_json.texts(rows, length, _stamp_text)
        if texts is not None:
            return [t + "}" for t in texts] if close else texts
    template, names = spec
    if close:
        template += "}"
    columns: list[list] = []
    for name in names:
        if name == "tradable":
            columns.append(_BOOL_TEXT[rows["tradable"].view(np.uint8)].tolist())
        elif name == "*depth":
            for side in ("bid", "ask"):
                q, p, o = rows[f"{side}_quantity"], rows[f"{side}_price"], rows[f"{side}_orders"]
                for level in range(DEPTH_LEVELS):
                    columns += (q[:, level].tolist(), p[:, level].tolist(), o[:, level].tolist())
        elif name[0] == "*":
            columns.append(_stamp_column(rows[name[1:]]))
        else:
            columns.append(rows[name].tolist())
    return [template % values for values in zip(*columns)]
