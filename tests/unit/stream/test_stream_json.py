"""The publishing hot path writes tick JSON without building dicts
(frames.to_json_texts, cached option fragments in the batcher). It must give
byte-for-byte the text of the dict path: json.dumps of frames.to_json_ticks
plus the option fields, Greeks and ``underlying`` the batcher adds."""
import json
import math
import random
from datetime import date, datetime, timezone

import numpy as np
import pytest

from tests.support.stream_frames import (INDICES, NFO, NSE, frame, full_packet, ltp_packet, quote_packet,
                                               random_packet, token)
from workers.stream import frames
from workers.stream.batcher import TickBatcher, latest_per_token, options_channel
from workers.stream.enrich import GREEK_NAMES, SOURCE_NAMES, GreeksEnricher, UnderlyingPrices
from workers.stream.instruments import InstrumentBook, OptionMeta, UnderlyingTokens
from workers.stream.publisher import PublishResult

KINDS = ["ltp", "index_quote", "index_full", "quote", "full"]
NOW = datetime(2031, 1, 2, 6, 0, tzinfo=timezone.utc)
EXPIRY = date(2031, 1, 30)
SPOT, FUT, EQUITY = token(256, INDICES), token(9000, NFO), token(500, NSE)


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


@pytest.mark.parametrize("kind", KINDS + ["mixed"])
def test_texts_equal_json_dumps_of_the_dicts(kind):
    rng = random.Random(kind)
    packets = [random_packet(rng, rng.choice(KINDS) if kind == "mixed" else kind) for _ in range(300)]
    rows = frames.decode_frame(frame(packets))
    expected = [dumps(t) for t in frames.to_json_ticks(rows)]
    assert frames.to_json_texts(rows) == expected
    assert frames.to_json_texts(rows, close=False) == [t[:-1] for t in expected]


def test_texts_of_edge_values():
    rows = frames.decode_frame(frame([ltp_packet(token(1, NFO), 0), ltp_packet(token(2, INDICES), 2**32 - 1)]))
    assert frames.to_json_texts(rows) == [dumps(t) for t in frames.to_json_ticks(rows)]
    assert frames.to_json_texts(rows[:0]) == []
    # Rows not from decode_frame may hold NaN: json.dumps' own spelling, as before.
    odd = rows.copy()
    odd["last_price"][0] = math.nan
    assert frames.to_json_texts(odd) == [dumps(t) for t in frames.to_json_ticks(odd)]
    assert frames.to_json_texts(odd)[0].endswith('"last_price":NaN}')


def test_timestamps_one_second_or_many():
    quote = quote_packet(token(7, NFO), 100, 1, 100, 1, 1, 1, 100, 100, 100, 100)
    depth = [(1, 100, 1)] * 10
    same = frame([full_packet(quote, 1_700_000_000, 1, 1, 1, 1_700_000_001, depth)] * 3)
    many = frame([full_packet(quote, 1_700_000_000 + i, 1, 1, 1, 1_800_000_000 - i, depth) for i in range(5)])
    for data in (same, many):
        rows = frames.decode_frame(data)
        texts = frames.to_json_texts(rows)
        assert texts == [dumps(t) for t in frames.to_json_ticks(rows)]
    assert json.loads(frames.to_json_texts(frames.decode_frame(same))[0])["exchange_timestamp"] == "2023-11-14T22:13:21Z"


# ---- the batcher's messages, against the dict path it replaced ----------------------------------


def make_book():
    options = {}
    for i, strike in enumerate((19000.0, 19500.0, 20000.0)):
        for is_call in (True, False):
            tok = token(9100 + 2 * i + (0 if is_call else 1), NFO)
            options[tok] = OptionMeta(tok, "NIFTY", strike, EXPIRY, is_call, 50,
                                      f"NIFTY31JAN{int(strike)}{'CE' if is_call else 'PE'}")
    return InstrumentBook(options, {"NIFTY": UnderlyingTokens("NIFTY", SPOT, (FUT,), (EXPIRY,))})


class Recorder:
    def __init__(self):
        self.calls = []

    def publish(self, messages, latest=None):
        self.calls.append((messages, latest))
        return PublishResult.PUBLISHED


def reference_ticks(book, rows, enricher, prices):
    """The tick dicts as the batcher built them before (dicts, then json.dumps)."""
    tokens = rows["instrument_token"]
    opt_idx, underlying_id, is_underlying = book.classify(tokens)
    prices.update(tokens[is_underlying], rows["last_price"][is_underlying])
    ticks = frames.to_json_ticks(rows)
    where = np.flatnonzero(opt_idx >= 0)
    greeks = enricher.compute(book, rows[where], opt_idx[where], prices) if enricher and where.size else None
    for j, i in enumerate(where.tolist()):
        meta = book.option_meta[opt_idx[i]]
        tick = ticks[i]
        tick.update(tradingsymbol=meta.tradingsymbol, strike=meta.strike, expiry=meta.expiry.isoformat(),
                    option_type="CE" if meta.is_call else "PE", lot_size=meta.lot_size)
        if greeks is not None:
            price = float(greeks["underlying_price"][j])
            tick["underlying_price"] = None if math.isnan(price) else price
            tick["underlying_source"] = SOURCE_NAMES[greeks["underlying_source"][j]]
            tick["greeks"] = {n: (float(greeks[n][j]) if math.isfinite(greeks[n][j]) else None) for n in GREEK_NAMES}
    for i, tick in enumerate(ticks):
        uid = int(underlying_id[i])
        tick["underlying"] = book.names[uid] if uid >= 0 else None
    return ticks


@pytest.mark.parametrize("with_greeks", [True, False])
def test_batcher_messages_and_latest_equal_the_dict_path(with_greeks):
    book = make_book()
    rng = random.Random(11)
    enricher = GreeksEnricher(0.10, 0.0, now=lambda: NOW) if with_greeks else None
    batcher = TickBatcher(Recorder(), book, enricher, window_ms=100, wall_clock=lambda: 1_900_000_000.25)
    reference_prices = UnderlyingPrices()
    for round_ in range(3):  # round 0: spot only (no future price yet); then the future too
        packets = [ltp_packet(SPOT, 19500_00 + round_)]
        if round_:
            packets.append(quote_packet(FUT, 19550_00 + round_, 1, 1, 1, 1, 1, 1, 1, 1, 1))
        for i, meta in enumerate(book.option_meta):
            price = 0 if i == 0 else rng.randrange(50_00, 900_00)  # price 0: Greeks not computable (null)
            quote = quote_packet(meta.token, price, 1, price, 10, 1, 1, price, price, price, price)
            packets.append(full_packet(quote, 1_900_000_000, 5, 6, 4, 1_900_000_001,
                                       [(rng.randrange(100), rng.randrange(1, 10**6), rng.randrange(9))] * 10))
        packets += [random_packet(rng, "full", NSE), ltp_packet(EQUITY, 2500_00)]
        rows = frames.decode_frame(frame(packets))
        batcher.add(rows)
        report = batcher.flush()
        expected = reference_ticks(book, latest_per_token(rows), enricher, reference_prices)
        pairs, latest = batcher.publisher.calls[-1]
        messages = dict(pairs)  # one chain (one expiry) per underlying here: one message per channel
        assert len(messages) == len(pairs)
        texts = {t["instrument_token"]: dumps(t) for t in expected}
        assert {tok: text for tok, text in latest.items()} == texts  # byte for byte
        assert report.channels == {"ticker:nifty:options": 6, "ticker:nifty:underlying": 2 if round_ else 1,
                                   "ticker:other:underlying": 2}
        published = json.loads(messages[options_channel("NIFTY")])
        assert published["published_at"] == "2030-03-17T17:46:40.250Z" and published["count"] == 6
        assert [dumps(t) for t in published["ticks"]] == [texts[m.token] for m in book.option_meta]
        for channel, message in messages.items():  # each tick's text spliced in unchanged
            for tick in json.loads(message)["ticks"]:
                assert texts[tick["instrument_token"]] in message
        if with_greeks:
            ticks = {t["instrument_token"]: t for t in expected}
            assert ticks[book.option_meta[0].token]["greeks"]["iv"] is None
            priced = ticks[book.option_meta[1].token]
            assert priced["greeks"]["iv"] is not None
            assert priced["underlying_source"] == ("future" if round_ else "spot")


def test_new_instrument_book_rebuilds_the_cached_fragments():
    book = make_book()
    batcher = TickBatcher(Recorder(), book, window_ms=100)
    tok = book.option_meta[0].token
    batcher.add(frames.decode_frame(frame([ltp_packet(tok, 100_00)])))
    batcher.flush()
    assert json.loads(batcher.publisher.calls[-1][1][tok])["tradingsymbol"] == "NIFTY31JAN19000CE"
    batcher.instruments = InstrumentBook({tok: OptionMeta(tok, "BANKNIFTY", 44000.0, EXPIRY, False, 15, "BNF44000PE")})
    batcher.add(frames.decode_frame(frame([ltp_packet(tok, 101_00)])))
    batcher.flush()
    pairs, latest = batcher.publisher.calls[-1]
    tick = json.loads(latest[tok])
    assert (tick["tradingsymbol"], tick["strike"], tick["option_type"], tick["lot_size"], tick["underlying"]) == (
        "BNF44000PE", 44000.0, "PE", 15, "BANKNIFTY")
    assert [channel for channel, _ in pairs] == ["ticker:banknifty:options"]
