"""Decode whole Kite ticker binary frames into NumPy rows.

KiteTicker's ``_parse_binary`` builds a dict per packet with one
``struct.unpack`` per field (~30 µs per full packet). Here a frame is cut
into packets once, packets of the same length are gathered into a 2-D byte
array and every field is read for all of them in one vectorised step.

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
import struct
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

_KNOWN_LENGTHS = (8, 28, 32, 44, 184)
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
    buf = np.frombuffer(frame, dtype=np.uint8)
    offsets, lengths = _packet_offsets(frame, buf)
    return _decode_packets(buf, offsets, lengths)


def decode_frames(frames: list[bytes]) -> tuple[np.ndarray, int]:
    """The packets of several frames as one array of rows, in order, and how many frames were
    malformed (skipped whole). One vectorised pass over all of them: at market scale a
    connection's frames are small (tens of packets), and decoding each on its own would cost
    its fixed overhead many thousand times a second."""
    parts, offsets, lengths, base, malformed = [], [], [], 0, 0
    for frame in frames:
        if len(frame) < 2:
            continue
        try:
            frame_offsets, frame_lengths = _packet_offsets(frame, np.frombuffer(frame, dtype=np.uint8))
        except MalformedFrame:
            malformed += 1
            continue
        parts.append(frame)
        offsets.append(frame_offsets + base)
        lengths.append(frame_lengths)
        base += len(frame)
    if not parts:
        return _EMPTY, malformed
    buf = np.frombuffer(parts[0] if len(parts) == 1 else b"".join(parts), dtype=np.uint8)
    return _decode_packets(buf, np.concatenate(offsets), np.concatenate(lengths)), malformed


def _decode_packets(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    rows = np.zeros(len(offsets), dtype=TICK_DTYPE)
    distinct = _distinct(lengths)
    if len(distinct) == 1:
        if distinct[0] not in _KNOWN_LENGTHS:
            return _EMPTY
        _decode_group(buf, offsets, int(distinct[0]), rows, slice(None))
        return rows
    for length in distinct:
        if length in _KNOWN_LENGTHS:
            where = np.flatnonzero(lengths == length)
            _decode_group(buf, offsets[where], int(length), rows, where)
    known = np.isin(lengths, _KNOWN_LENGTHS)
    return rows if known.all() else rows[known]


def _distinct(lengths: np.ndarray) -> list[int]:
    if lengths.size == 0:
        return []
    first = lengths[0]
    return [int(first)] if (lengths == first).all() else np.unique(lengths).tolist()


def _packet_offsets(frame: bytes, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offset (of the packet body) and length of every packet."""
    count = struct.unpack_from(">H", frame, 0)[0]
    if count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    size = len(frame)
    if size < 4:
        raise MalformedFrame(f"frame of {size} bytes announces {count} packets")
    # Fast path: a frame where every packet has the first packet's length
    # (a whole frame in one mode, the common case) is a fixed stride.
    first_len = struct.unpack_from(">H", frame, 2)[0]
    stride = first_len + 2
    if 2 + count * stride == size:
        heads = 2 + stride * np.arange(count, dtype=np.int64)
        lens = (buf[heads].astype(np.int64) << 8) | buf[heads + 1]
        if (lens == first_len).all():
            return heads + 2, lens
    offsets = np.empty(count, np.int64)
    lengths = np.empty(count, np.int64)
    pos = 2
    unpack = struct.unpack_from
    for i in range(count):
        if pos + 2 > size:
            raise MalformedFrame(f"packet {i} of {count} starts past the end of the frame")
        length = unpack(">H", frame, pos)[0]
        pos += 2
        if pos + length > size:
            raise MalformedFrame(f"packet {i} of {count} ({length} bytes) runs past the end")
        offsets[i] = pos
        lengths[i] = length
        pos += length
    return offsets, lengths


@njit(cache=True)
def _big_endian_words(buf, offsets, count):
    """The `count` big-endian u32 words of each packet, as int64 (a gather that NumPy's fancy
    indexing would do through an index array eight times the packets' size)."""
    words = np.empty((offsets.size, count), dtype=np.int64)
    for i in range(offsets.size):
        at = offsets[i]
        for k in range(count):
            p = at + 4 * k
            words[i, k] = (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) \
                | np.int64(buf[p + 3])
    return words


def warm_up() -> None:
    """Compile (or load from numba's cache) the decoder and the JSON writer before the first frame."""
    _big_endian_words(np.zeros(4, dtype=np.uint8), np.zeros(1, dtype=np.int64), 1)
    tick_json.warm_up()


def _decode_group(buf: np.ndarray, offsets: np.ndarray, length: int, rows: np.ndarray, where) -> None:
    """Fill ``rows[where]`` from packets of one length starting at ``offsets``."""
    words = _big_endian_words(buf, offsets.astype(np.int64), length // 4)  # (n, length // 4)
    token = words[:, 0]
    segment = token & 0xFF
    divisor = np.where(
        segment == SEGMENT_CDS, 10_000_000.0, np.where((segment == SEGMENT_BCD) | (segment == SEGMENT_NCO), 10_000.0, 100.0)
    )
    out = {
        "instrument_token": token,
        "packet_length": length,
        "tradable": segment != SEGMENT_INDICES,
        "last_price": words[:, 1] / divisor,
    }
    if length == 8:
        out["mode"] = MODE_LTP
    elif length in (28, 32):
        out["mode"] = MODE_QUOTE if length == 28 else MODE_FULL
        # Index packets carry high, low, open, close (not open first).
        out["high"] = words[:, 2] / divisor
        out["low"] = words[:, 3] / divisor
        out["open"] = words[:, 4] / divisor
        out["close"] = words[:, 5] / divisor
        if length == 32:
            out["exchange_timestamp"] = words[:, 7]
    else:
        out["mode"] = MODE_QUOTE if length == 44 else MODE_FULL
        out["last_traded_quantity"] = words[:, 2]
        out["average_traded_price"] = words[:, 3] / divisor
        out["volume_traded"] = words[:, 4]
        out["total_buy_quantity"] = words[:, 5]
        out["total_sell_quantity"] = words[:, 6]
        out["open"] = words[:, 7] / divisor
        out["high"] = words[:, 8] / divisor
        out["low"] = words[:, 9] / divisor
        out["close"] = words[:, 10] / divisor
        if length == 184:
            out["last_trade_time"] = words[:, 11]
            out["oi"] = words[:, 12]
            out["oi_day_high"] = words[:, 13]
            out["oi_day_low"] = words[:, 14]
            out["exchange_timestamp"] = words[:, 15]
            depth = words[:, 16:46].reshape(-1, 10, 3)  # (n, level, [qty, price, orders<<16|pad])
            out["bid_quantity"] = depth[:, :5, 0]
            out["bid_price"] = depth[:, :5, 1] / divisor[:, None]
            out["bid_orders"] = depth[:, :5, 2] >> 16
            out["ask_quantity"] = depth[:, 5:, 0]
            out["ask_price"] = depth[:, 5:, 1] / divisor[:, None]
            out["ask_orders"] = depth[:, 5:, 2] >> 16
    if length != 8:
        close = out["close"]
        with np.errstate(divide="ignore", invalid="ignore"):
            change = (out["last_price"] - close) * 100 / close
        out["change"] = np.where(close != 0, change, 0.0)
    target = rows if isinstance(where, slice) else None
    for name, values in out.items():
        if target is not None:
            target[name] = values
        else:
            rows[name][where] = values


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
