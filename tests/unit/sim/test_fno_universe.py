"""The paper broker's `--universe fno`: NSE's F&O segment, its contracts, tokens and tick weights."""
from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date

import numpy as np
import pytest

from app.market.instruments import (InstrumentInfo, InstrumentRegistry, normalise_row, option_underlyings,
                                    underlying_instruments)
from sim import expiries, fno_universe
from sim.market import Market
from sim.universe import instruments_csv

TODAY = date(2026, 12, 1)   # a Tuesday: NIFTY's weekly expiry day, so the chains start a week out
INDEX_LOTS = {"NIFTY": 65, "BANKNIFTY": 30, "FINNIFTY": 60, "MIDCPNIFTY": 120, "NIFTYNXT50": 25}
SEGMENT_BYTE = {"INDICES": 9, "NSE": 1, "NFO-FUT": 2, "NFO-OPT": 2}


@pytest.fixture(scope="module")
def fno():
    return Market(seed=1, today=TODAY, universe="fno")


def by_name(market):
    found: dict[str, list] = {}
    for inst in market.instruments:
        found.setdefault(inst.underlying, []).append(inst)
    return found


def test_every_underlying_has_its_spot_three_futures_and_monthly_chains(fno):
    kinds = Counter((i.segment, i.instrument_type) for i in fno.instruments)
    assert kinds[("INDICES", "EQ")] == 5 and 180 <= kinds[("NSE", "EQ")] <= 200
    assert 80_000 <= fno.n <= 100_000
    monthlies = expiries.monthly_expiries_after(TODAY, 3)
    for name, insts in by_name(fno).items():
        spots = [i for i in insts if i.is_spot]
        assert len(spots) == 1 and spots[0].is_index is (name in INDEX_LOTS), name
        assert sorted(i.expiry for i in insts if i.instrument_type == "FUT") == monthlies, name
        option_expiries = sorted({i.expiry for i in insts if i.instrument_type in ("CE", "PE")})
        if name == "NIFTY":   # NSE 2026: weekly options on NIFTY only
            assert option_expiries == sorted(set(expiries.weekly_expiries_after(TODAY, 4)) | set(monthlies))
        else:
            assert option_expiries == monthlies, name
        calls = sorted(i.strike for i in insts if i.instrument_type == "CE" and i.expiry == monthlies[0])
        puts = sorted(i.strike for i in insts if i.instrument_type == "PE" and i.expiry == monthlies[0])
        step = np.diff(calls)
        assert calls == puts and len(calls) >= 10 and np.allclose(step, step[0]) and calls[0] > 0, name
        spot = fno.underlying_spot(name)
        assert calls[0] < spot < calls[-1], name


def test_lot_sizes_and_tick_sizes_are_nse_like(fno):
    for name, insts in by_name(fno).items():
        derivatives = [i for i in insts if not i.is_spot]
        lots = {i.lot_size for i in derivatives}
        assert len(lots) == 1, name
        lot = lots.pop()
        if name in INDEX_LOTS:
            assert lot == INDEX_LOTS[name]
        else:   # NSE keeps a stock's contract value around ₹5-10 lakh
            value = lot * fno.underlying_spot(name)
            assert 400_000 <= value <= 1_100_000, (name, lot, value)
        assert {i.tick_size for i in derivatives} == {0.05}, name
    spot_ticks = {i.tradingsymbol: i.tick_size for i in fno.spot_instruments}
    assert spot_ticks["NIFTY 50"] == 0.0          # Kite lists indices with tick_size 0
    assert spot_ticks["IDEA"] == 0.01 and spot_ticks["SBIN"] == 0.05 and spot_ticks["RELIANCE"] == 0.10
    assert spot_ticks["MARUTI"] == 1.00 and spot_ticks["PAGEIND"] == 5.00
    assert fno_universe.stock_lot(1500) == 500 and fno_universe.strike_step(1500) == 20


def test_tokens_are_unique_and_carry_their_segment(fno):
    tokens = [i.instrument_token for i in fno.instruments]
    assert len(set(tokens)) == fno.n and len({i.key for i in fno.instruments}) == fno.n
    for inst in fno.instruments:
        assert inst.instrument_token == (int(inst.exchange_token) << 8) | SEGMENT_BYTE[inst.segment], inst
    assert fno.by_key["NSE:NIFTY 50"].instrument_token == 256265
    assert fno.by_key["NSE:NIFTY BANK"].instrument_token == 260105
    assert max(tokens) < 2 ** 32


def test_the_same_seed_lists_the_same_instruments_and_prices(fno):
    a, b = Market(seed=3, today=TODAY, universe="fno"), Market(seed=3, today=TODAY, universe="fno")

    def rows(market):   # the CSV without last_price (options' prices move with the wall clock)
        lines = instruments_csv(market.instruments, market.ltp).splitlines()
        return [line.split(",")[:4] + line.split(",")[5:] for line in lines]

    assert rows(a) == rows(b) and np.array_equal(a.spot, b.spot)
    assert np.array_equal(a.liquidity, b.liquidity)
    assert not np.array_equal(a.spot, fno.spot)   # seed 1
    for _ in range(3):
        a.step(now=a.updated_at + 0.25)
        b.step(now=b.updated_at + 0.25)
    assert np.array_equal(a.spot, b.spot) and np.array_equal(a.bid_qty, b.bid_qty)


def test_tick_weights_favour_spots_near_futures_and_at_the_money_options(fno):
    w = fno.liquidity
    assert w.mean() == pytest.approx(1.0) and w.min() > 0.1 and w.max() < 20
    spot = fno.underlying_spot("NIFTY")
    chain = [i for i in fno.instruments if i.name == "NIFTY" and i.instrument_type == "CE"]
    near = min(i.expiry for i in chain)
    atm = min((i for i in chain if i.expiry == near), key=lambda i: abs(i.strike - spot))
    far_strike = max((i for i in chain if i.expiry == near), key=lambda i: i.strike)
    far_expiry = min((i for i in chain if i.expiry == max(c.expiry for c in chain)),
                     key=lambda i: abs(i.strike - spot))
    assert w[atm.index] > 10 * w[far_strike.index]
    assert w[atm.index] > 4 * w[far_expiry.index]
    futures = sorted((i for i in fno.instruments if i.name == "RELIANCE" and i.instrument_type == "FUT"),
                     key=lambda i: i.expiry)
    assert w[futures[0].index] > w[futures[1].index] > w[futures[2].index]
    assert w[fno.by_key["NSE:RELIANCE"].index] > 1 and w[fno.by_key["NSE:NIFTY 50"].index] > 1


def test_the_small_universe_keeps_its_instruments_and_steady_rates():
    small = Market(seed=1, today=TODAY)
    assert small.universe == "small" and small.n == 652 and len(small.underlyings) == 2
    assert [i.instrument_token for i in small.spot_instruments] == [256265, 260105]
    assert np.all(small.liquidity == 1.0)


def test_the_app_registry_understands_the_dump(fno):
    text = instruments_csv(fno.instruments, fno.ltp)
    fields = InstrumentInfo.__dataclass_fields__
    infos = [InstrumentInfo(**{k: v for k, v in normalise_row(row).items() if k in fields})
             for row in csv.DictReader(io.StringIO(text))]
    registry = InstrumentRegistry.of(infos)
    names = option_underlyings(registry)
    assert sorted(names) == sorted(u.name for u in fno.underlyings)
    for name in names:
        found = underlying_instruments(registry, name, TODAY)
        spot = next(i for i in fno.spot_instruments if i.underlying == name)
        assert found.index is not None and found.index.instrument_token == spot.instrument_token, name
        assert len(found.futures) == 3 and found.futures[0].expiry < found.futures[1].expiry, name
        assert len(found.options) == sum(1 for i in fno.instruments if i.name == name and i.strike), name
