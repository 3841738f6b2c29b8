"""GreeksEnricher: one vectorised app.greeks call per batch; underlying price
from the same-expiry future (Black-76), a rolled nearer future, or spot."""
import json
import math
from datetime import date, datetime, timezone

import numpy as np
import redis

from app import greeks
from tests.stream.stream_frame_builder import INDICES, NFO, frame, ltp_packet, token
from workers.stream import frames
from workers.stream.batcher import TickBatcher
from workers.stream.enrich import SOURCE_NAMES, GreeksEnricher, UnderlyingPrices
from workers.stream.instruments import InstrumentBook, OptionMeta, UnderlyingTokens
from workers.stream.publisher import RedisPublisher

NOW = datetime(2031, 1, 2, 6, 0, tzinfo=timezone.utc)
EXPIRY = date(2031, 1, 30)
WEEKLY = date(2031, 1, 9)
SPOT, FUT = token(256, INDICES), token(9000, NFO)
STRIKES = [19000.0, 19500.0, 20000.0]


def bsm(spot, strike, t, r, q, sigma, is_call):
    n = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    d1 = (math.log(spot / strike) + (r - q + sigma * sigma / 2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    if is_call:
        return spot * math.exp(-q * t) * n(d1) - strike * math.exp(-r * t) * n(d2), math.exp(-q * t) * n(d1)
    return strike * math.exp(-r * t) * n(-d2) - spot * math.exp(-q * t) * n(-d1), -math.exp(-q * t) * n(-d1)


def make_book(expiry=EXPIRY):
    options = {}
    for i, strike in enumerate(STRIKES):
        for is_call in (True, False):
            tok = token(9100 + 2 * i + (0 if is_call else 1), NFO)
            options[tok] = OptionMeta(tok, "NIFTY", strike, expiry, is_call, 50, f"NIFTY{int(strike)}{'CE' if is_call else 'PE'}")
    return InstrumentBook(options, {"NIFTY": UnderlyingTokens("NIFTY", SPOT, (FUT,), (EXPIRY,))})


def t_of(expiry):
    return float(greeks.time_to_expiry(expiry, NOW))


def priced_rows(book, underlying, q, sigma=0.18):
    """Option rows priced by BSM at (underlying, q); and the expected deltas."""
    t = t_of(book.option_meta[0].expiry)
    rows = np.zeros(len(book.option_meta), dtype=frames.TICK_DTYPE)
    deltas = []
    for i, meta in enumerate(book.option_meta):
        price, delta = bsm(underlying, meta.strike, t, 0.10, q, sigma, meta.is_call)
        rows[i]["instrument_token"] = meta.token
        rows[i]["last_price"] = price
        deltas.append(delta)
    return rows, deltas


def test_spot_with_dividend_yield_when_no_future_is_known():
    book = make_book()
    assert 0.07 < t_of(EXPIRY) < 0.08  # 28 days
    rows, deltas = priced_rows(book, 19480.0, q=0.0)
    prices = UnderlyingPrices()
    prices.update(np.array([SPOT]), np.array([19480.0]))
    out = GreeksEnricher(0.10, 0.0, now=lambda: NOW).compute(book, rows, np.arange(len(rows)), prices)
    assert np.allclose(out["iv"], 0.18, atol=1e-4)
    assert np.allclose(out["delta"], deltas, atol=1e-4)
    assert (out["underlying_price"] == 19480.0).all()
    assert [SOURCE_NAMES[c] for c in out["underlying_source"]] == ["spot"] * len(rows)
    assert (out["gamma"] > 0).all() and (out["vega"] > 0).all()


def test_same_expiry_future_is_the_forward_black76():
    book = make_book()
    fut = 19650.0
    rows, deltas = priced_rows(book, fut, q=0.10)  # Black-76: S=F with q=r
    prices = UnderlyingPrices()
    prices.update(np.array([SPOT, FUT]), np.array([19480.0, fut]))  # spot known too: the future wins
    out = GreeksEnricher(0.10, 0.0, now=lambda: NOW).compute(book, rows, np.arange(len(rows)), prices)
    assert np.allclose(out["iv"], 0.18, atol=1e-4)
    assert np.allclose(out["delta"], deltas, atol=1e-4)
    assert [SOURCE_NAMES[c] for c in out["underlying_source"]] == ["future"] * len(rows)


def test_weekly_uses_the_monthly_future_rolled_back_to_its_expiry():
    book = make_book(WEEKLY)
    fut = 19650.0
    forward = fut * math.exp(-0.10 * (t_of(EXPIRY) - t_of(WEEKLY)))
    rows, _ = priced_rows(book, forward, q=0.10)
    prices = UnderlyingPrices()
    prices.update(np.array([FUT]), np.array([fut]))
    out = GreeksEnricher(0.10, 0.0, now=lambda: NOW).compute(book, rows, np.arange(len(rows)), prices)
    assert np.allclose(out["underlying_price"], forward)
    assert np.allclose(out["iv"], 0.18, atol=1e-4)
    assert [SOURCE_NAMES[c] for c in out["underlying_source"]] == ["future_rolled"] * len(rows)


def test_no_underlying_price_gives_no_greeks():
    book = make_book()
    rows, _ = priced_rows(book, 19480.0, q=0.0)
    out = GreeksEnricher(0.10, 0.0, now=lambda: NOW).compute(book, rows, np.arange(len(rows)), UnderlyingPrices())
    assert np.isnan(out["iv"]).all() and np.isnan(out["delta"]).all() and np.isnan(out["underlying_price"]).all()
    assert (out["underlying_source"] == 0).all()


def test_batcher_publishes_greeks_with_the_option_ticks(redis_url):
    book = make_book()
    now = [0.0]
    batcher = TickBatcher(RedisPublisher.from_url(redis_url), book, GreeksEnricher(0.10, 0.0, now=lambda: NOW),
                          clock=lambda: now[0])
    call = book.option_meta[2]  # 19500 CE
    batcher.add(frames.decode_frame(frame([ltp_packet(call.token, 250_00)])))  # before any spot tick
    batcher.add(frames.decode_frame(frame([ltp_packet(SPOT, 19480_00)])))
    now[0] = 1.0
    assert batcher.flush_if_due().channels == {"ticker:nifty:options": 1, "ticker:nifty:underlying": 1}
    tick = json.loads(redis.Redis.from_url(redis_url).hget("ticks:latest", str(call.token)))
    # The spot tick of the same batch is applied before the options are priced.
    assert tick["underlying_price"] == 19480.0 and tick["underlying_source"] == "spot"
    assert set(tick["greeks"]) == {"iv", "delta", "gamma", "theta", "vega", "rho"}
    assert 0.05 < tick["greeks"]["iv"] < 1.0 and 0.3 < tick["greeks"]["delta"] < 0.7
