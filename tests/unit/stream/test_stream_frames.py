"""frames.decode_frame against the official KiteTicker._parse_binary, field for field."""
import math
import random

import numpy as np
import pytest
from kiteconnect import KiteTicker

from tests.support.stream_frames import (BCD, CDS, INDICES, NCO, NFO, frame, full_packet, index_packet,
                                  ltp_packet, quote_packet, random_packet, token)
from workers.stream import frames

KINDS = ["ltp", "index_quote", "index_full", "quote", "full"]


@pytest.fixture(scope="module")
def kite():
    return KiteTicker("apikey", "accesstoken")


def assert_same(ours, theirs, path="tick"):
    """Exact equality, recursively, with matching key sets (floats must be bit-equal)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), path
        assert set(ours) == set(theirs), f"{path}: keys {sorted(set(ours) ^ set(theirs))}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(theirs, float):
        assert ours == theirs or (math.isnan(ours) and math.isnan(theirs)), f"{path}: {ours!r} != {theirs!r}"
    else:
        assert ours == theirs and type(ours) is type(theirs) or (ours == theirs == 0), f"{path}: {ours!r} != {theirs!r}"


@pytest.mark.parametrize("kind", KINDS)
def test_each_packet_kind_matches_kiteticker(kite, kind):
    rng = random.Random(kind)
    data = frame([random_packet(rng, kind) for _ in range(50)])
    ours = frames.to_kite_ticks(frames.decode_frame(data))
    theirs = kite._parse_binary(data)
    assert len(theirs) == 50
    assert_same(ours, theirs)


def test_known_values_full_packet_decoded_by_hand(kite):
    tok = token(12345, NFO)
    quote = quote_packet(tok, 1975_50, 75, 1970_25, 123456, 1000, 2000, 1950_00, 1990_00, 1940_00, 1960_00)
    depth = [(10 * i + 1, 1975_00 - i * 5, i + 1) for i in range(5)] + [(20 * i + 2, 1976_00 + i * 5, 7 + i) for i in range(5)]
    data = frame([full_packet(quote, 1_700_000_000, 5_000_000, 5_100_000, 4_900_000, 1_700_000_001, depth)])
    row = frames.decode_frame(data)[0]
    assert row["instrument_token"] == tok and row["mode"] == frames.MODE_FULL and row["tradable"]
    assert row["last_price"] == 1975.50 and row["average_traded_price"] == 1970.25
    assert (row["open"], row["high"], row["low"], row["close"]) == (1950.0, 1990.0, 1940.0, 1960.0)
    assert row["change"] == pytest.approx((1975.5 - 1960) * 100 / 1960)
    assert row["oi"] == 5_000_000 and row["exchange_timestamp"] == 1_700_000_001
    assert row["bid_price"].tolist() == [1975.0, 1974.95, 1974.9, 1974.85, 1974.8]
    assert row["ask_orders"].tolist() == [7, 8, 9, 10, 11]
    assert_same(frames.to_kite_ticks(frames.decode_frame(data)), kite._parse_binary(data))


def test_divisor_by_segment_and_index_not_tradable(kite):
    packets = [ltp_packet(token(7, seg), 123_456_789) for seg in (NFO, CDS, BCD, NCO, INDICES)]
    rows = frames.decode_frame(frame(packets))
    assert rows["last_price"].tolist() == [1234567.89, 12.3456789, 12345.6789, 12345.6789, 1234567.89]
    assert rows["tradable"].tolist() == [True, True, True, True, False]
    assert_same(frames.to_kite_ticks(rows), kite._parse_binary(frame(packets)))


def test_index_ohlc_order_is_high_low_open_close(kite):
    data = frame([index_packet(token(256, INDICES), 19500_00, 19600_00, 19400_00, 19450_00, 19480_00, 0, 1_700_000_000)])
    row = frames.decode_frame(data)[0]
    assert (row["high"], row["low"], row["open"], row["close"]) == (19600.0, 19400.0, 19450.0, 19480.0)
    assert row["mode"] == frames.MODE_FULL
    assert_same(frames.to_kite_ticks(frames.decode_frame(data)), kite._parse_binary(data))


def test_mixed_frames_with_many_packets_keep_packet_order(kite):
    rng = random.Random(7)
    for size in (1, 2, 17, 500, 1500):
        kinds = [rng.choice(KINDS) for _ in range(size)]
        data = frame([random_packet(rng, k) for k in kinds])
        rows = frames.decode_frame(data)
        theirs = kite._parse_binary(data)
        assert len(rows) == len(theirs) == size
        assert rows["instrument_token"].tolist() == [t["instrument_token"] for t in theirs]
        assert_same(frames.to_kite_ticks(rows), theirs)


def test_unknown_packet_lengths_are_dropped_like_kiteticker(kite):
    rng = random.Random(3)
    packets = [random_packet(rng, "quote"), b"\x00" * 12, random_packet(rng, "ltp"), b"\x01" * 40]
    data = frame(packets)
    rows = frames.decode_frame(data)
    assert len(rows) == 2
    assert_same(frames.to_kite_ticks(rows), kite._parse_binary(data))
    assert frames.decode_frame(frame([b"\x00" * 12] * 3)).size == 0


def test_heartbeat_and_empty_frames_decode_to_nothing():
    assert frames.decode_frame(b"\x00").size == 0
    assert frames.decode_frame(b"").size == 0
    assert frames.decode_frame(b"\x00\x00").size == 0


def test_truncated_frame_is_reported_not_misread():
    rng = random.Random(5)
    data = frame([random_packet(rng, "full") for _ in range(3)])
    with pytest.raises(frames.MalformedFrame):
        frames.decode_frame(data[:-10])
    with pytest.raises(frames.MalformedFrame):
        frames.decode_frame(b"\x00\x05\x00\x08" + b"\x00" * 8)


def test_decode_frames_concatenates_in_order():
    rng = random.Random(9)
    parts = [frame([random_packet(rng, "quote") for _ in range(n)]) for n in (3, 0, 4)] + [b"\x00"]
    rows, malformed = frames.decode_frames(parts)
    expected = np.concatenate([frames.decode_frame(p) for p in parts])
    assert len(rows) == 7 and rows.tobytes() == expected.tobytes() and malformed == 0


def test_decode_frames_skips_a_malformed_frame_whole():
    rng = random.Random(10)
    good = [frame([random_packet(rng, kind) for _ in range(5)]) for kind in ("full", "quote", "ltp")]
    rows, malformed = frames.decode_frames([good[0], good[1][:-3], good[2]])
    expected = np.concatenate([frames.decode_frame(good[0]), frames.decode_frame(good[2])])
    assert malformed == 1 and rows.tobytes() == expected.tobytes()


def test_json_ticks_use_utc_iso_timestamps():
    data = frame([index_packet(token(256, INDICES), 100, 100, 100, 100, 100, 0, 1_700_000_000)])
    tick = frames.to_json_ticks(frames.decode_frame(data))[0]
    assert tick["exchange_timestamp"] == "2023-11-14T22:13:20Z"
