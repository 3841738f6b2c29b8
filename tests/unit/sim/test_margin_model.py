"""The paper broker's margin model, freeze limits and iceberg legs, without a running broker."""
from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from sim.errors import KiteError
from sim.freeze import FreezeLimits, load
from sim.iceberg import leg_sizes
from sim.margins import EXPOSURE_RATE, SCAN_RANGE, Leg, order_margin, portfolio_margin
from sim.orders import OrderRequest
from sim.universe import Instrument

SPOT = 26_000.0
LOT = 65


def nifty(kind: str, strike: float = 0.0) -> Instrument:
    symbol = f"NIFTY26DEC{int(strike)}{kind}" if kind != "FUT" else "NIFTY26DECFUT"
    return Instrument(1, 1, "1", symbol, "NIFTY", date(2026, 12, 29), strike, 0.05, LOT, kind, "NFO-OPT", "NFO",
                      "NIFTY")


def test_a_bought_option_needs_its_premium_alone_or_in_a_portfolio():
    leg = Leg(nifty("CE", 26_000), LOT, 150.0)
    assert order_margin(leg, SPOT).total == pytest.approx(150.0 * LOT)
    assert portfolio_margin([leg], {"NIFTY": SPOT}).total == pytest.approx(150.0 * LOT)
    assert portfolio_margin([leg], {"NIFTY": SPOT}).span == 0


def test_a_naked_short_blocks_the_scan_range_and_exposure_and_is_credited_its_premium_in_a_portfolio():
    leg = Leg(nifty("CE", 26_000), -LOT, 150.0)
    alone = order_margin(leg, SPOT)
    assert alone.span == pytest.approx(SCAN_RANGE["NIFTY"] * SPOT * LOT)
    assert alone.exposure == pytest.approx(EXPOSURE_RATE * SPOT * LOT) and alone.option_premium == 0
    held = portfolio_margin([leg], {"NIFTY": SPOT})
    assert held.span == pytest.approx(alone.span) and held.option_premium == pytest.approx(-150.0 * LOT)
    assert held.total == pytest.approx(alone.total - 150.0 * LOT)


def test_a_credit_spread_risks_its_width_less_the_credit():
    short = Leg(nifty("CE", 26_000), -LOT, 150.0)
    wing = Leg(nifty("CE", 26_200), LOT, 70.0)
    margin = portfolio_margin([short, wing], {"NIFTY": SPOT})
    assert margin.span == pytest.approx(200 * LOT)
    assert margin.option_premium == pytest.approx(-80.0 * LOT)
    assert margin.total == pytest.approx(200 * LOT - 80 * LOT + EXPOSURE_RATE * SPOT * LOT)
    initial = order_margin(short, SPOT) + order_margin(wing, SPOT)
    assert margin.total < 0.4 * initial.total


def test_a_future_is_margined_like_a_short_option_on_either_side():
    for quantity in (LOT, -LOT):
        margin = portfolio_margin([Leg(nifty("FUT"), quantity, SPOT)], {"NIFTY": SPOT})
        assert margin.total == pytest.approx((SCAN_RANGE["NIFTY"] + EXPOSURE_RATE) * SPOT * LOT)


def test_freeze_limits_come_from_the_data_file_in_whole_lots():
    assert load() == {"NIFTY": 1755, "BANKNIFTY": 600}
    limits = FreezeLimits({"NIFTY": 1800})
    assert limits.limit(nifty("CE", 26_000)) == 1755      # 27 lots of 65
    with pytest.raises(KiteError, match=r"quantity 1820 \(28 lots\)"):
        limits.check(nifty("CE", 26_000), 1820)
    assert FreezeLimits().slices(nifty("CE", 26_000), 3 * 1755 + 65) == [1755, 1755, 1755, 65]
    with pytest.raises(ValueError):
        limits.update({"NIFTY": 0})


def request(quantity: int) -> OrderRequest:
    return OrderRequest(nifty("CE", 26_000), "iceberg", "BUY", "LIMIT", "NRML", quantity, 10.0, 0.0, "DAY", None,
                        0, 0.0, None)


def test_iceberg_legs_split_the_lots_with_the_extra_ones_first():
    assert leg_sizes(request(31 * LOT), {"iceberg_legs": "2", "iceberg_quantity": str(16 * LOT)}) == [16 * LOT,
                                                                                                       15 * LOT]
    assert leg_sizes(request(31 * LOT), {"iceberg_legs": 2, "iceberg_quantity": 15 * LOT}) == [16 * LOT, 15 * LOT]
    with pytest.raises(KiteError, match="iceberg_quantity"):
        leg_sizes(request(31 * LOT), {"iceberg_legs": 2, "iceberg_quantity": 14 * LOT})
    with pytest.raises(KiteError, match="LIMIT or SL"):
        leg_sizes(replace(request(4 * LOT), order_type="MARKET"), {"iceberg_legs": 2, "iceberg_quantity": 2 * LOT})
