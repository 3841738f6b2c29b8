"""Build Kite ticker binary frames with ``struct``, straight from the spec
(as sim/packets.py and Kite write them), independently of the decoder under test."""
from __future__ import annotations

import random
import struct

NFO, NSE, CDS, BCD, INDICES, NCO = 2, 1, 3, 6, 9, 12


def token(exchange_token: int, segment: int) -> int:
    return (exchange_token << 8) | segment


def ltp_packet(tok: int, ltp: int) -> bytes:
    return struct.pack(">II", tok, ltp)


def index_packet(tok: int, ltp: int, high: int, low: int, open_: int, close: int, change: int, ts: int | None = None) -> bytes:
    body = struct.pack(">7I", tok, ltp, high, low, open_, close, change)
    return body if ts is None else body + struct.pack(">I", ts)


def quote_packet(tok: int, ltp: int, ltq: int, atp: int, vol: int, tbq: int, tsq: int,
                 open_: int, high: int, low: int, close: int) -> bytes:
    return struct.pack(">11I", tok, ltp, ltq, atp, vol, tbq, tsq, open_, high, low, close)


def full_packet(quote: bytes, ltt: int, oi: int, oi_high: int, oi_low: int, ts: int,
                depth: list[tuple[int, int, int]]) -> bytes:
    assert len(quote) == 44 and len(depth) == 10
    body = quote + struct.pack(">5I", ltt, oi, oi_high, oi_low, ts)
    for qty, price, orders in depth:
        body += struct.pack(">IIH2x", qty, price, orders)
    assert len(body) == 184
    return body


def frame(packets: list[bytes]) -> bytes:
    out = struct.pack(">H", len(packets))
    for p in packets:
        out += struct.pack(">H", len(p)) + p
    return out


def random_packet(rng: random.Random, kind: str, segment: int | None = None) -> bytes:
    """One packet of ``kind`` (ltp, index_quote, index_full, quote, full) with random fields."""
    if kind.startswith("index"):
        segment = INDICES
    elif segment is None:
        segment = rng.choice([NFO, NFO, NSE, CDS, BCD, NCO])
    tok = token(rng.randrange(1, 2**24), segment)
    u = lambda hi=2**32 - 1: rng.randrange(0, hi)  # noqa: E731
    price = lambda: rng.randrange(1, 5_000_000)  # noqa: E731
    ts = rng.randrange(1_600_000_000, 1_900_000_000)
    if kind == "ltp":
        return ltp_packet(tok, price())
    if kind in ("index_quote", "index_full"):
        close = rng.choice([0, price()])
        return index_packet(tok, price(), price(), price(), price(), close, u(),
                            ts if kind == "index_full" else None)
    close = rng.choice([0, price(), price()])
    quote = quote_packet(tok, price(), u(10_000), price(), u(), u(10**7), u(10**7), price(), price(), price(), close)
    if kind == "quote":
        return quote
    depth = [(u(10**6), price(), u(2**16)) for _ in range(10)]
    return full_packet(quote, ts - rng.randrange(0, 60), u(10**8), u(10**8), u(10**8), ts, depth)
