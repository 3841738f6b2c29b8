"""GreeksEnricher: one vectorised app.greeks call per batch; underlying price
from the same-expiry future (Black-76), a rolled nearer future, or spot."""
import math

import numpy as np

from app import greeks
from tests.support.option_book import EXPIRY, FUT, NOW, SPOT, WEEKLY, make_book
from workers.stream import frames
from workers.stream.enrich import SOURCE_NAMES, GreeksEnricher, UnderlyingPrices


def bsm(spot, strike, t, r, q, sigma, is_call):
    n = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    d1 = (math.log(spot / strike) + (r - q + sigma * sigma / 2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    if is_call:
        return spot * math.exp(-q * t) * n(d1) - strike * math.exp(-r * t) * n(d2), math.exp(-q * t) * n(d1)
    return strike * math.exp(-r * t) * n(-d2) - spot * math.exp(-q * t) * n(-d1), -math.exp(-q * t) * n(-d1)


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
