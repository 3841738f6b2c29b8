"""The registry's index by underlying, and choosing a chain's instruments around the ATM."""
from __future__ import annotations

from datetime import date

import pytest

from app.market.chain_selection import select_chain
from app.market.instruments import InstrumentInfo, InstrumentRegistry, underlying_instruments
from app.market.option_chain import NoSuchChain

TODAY = date(2026, 12, 1)
PAST, NEAR, FAR = date(2026, 11, 24), date(2026, 12, 8), date(2026, 12, 29)


def option(token, name, expiry, strike, side):
    return InstrumentInfo(token, token, f"{name}{expiry:%y%m%d}{strike:g}{side}", name, "NFO", "NFO-OPT", side,
                          expiry, float(strike), 0.05, 65)


def future(token, name, expiry):
    return InstrumentInfo(token, token, f"{name}{expiry:%y%b}FUT", name, "NFO", "NFO-FUT", "FUT", expiry, 0.0,
                          0.05, 65)


NIFTY_INDEX = InstrumentInfo(256265, 1001, "NIFTY 50", "NIFTY 50", "NSE", "INDICES", "EQ", None, 0.0, 0.0, 0)
RELIANCE = InstrumentInfo(738561, 2885, "RELIANCE", "RELIANCE INDUSTRIES", "NSE", "NSE", "EQ", None, 0.0, 0.1, 1)
STRIKES = range(25000, 27001, 100)  # 21 strikes
DUMP = [NIFTY_INDEX, RELIANCE,
        future(900, "NIFTY", FAR), future(901, "NIFTY", NEAR), future(902, "NIFTY", PAST),
        future(950, "RELIANCE", FAR),
        *[option(1000 + 2 * k + (side == "PE"), "NIFTY", NEAR, strike, side)
          for k, strike in enumerate(STRIKES) for side in ("PE", "CE")],
        *[option(2000 + 2 * k + (side == "PE"), "NIFTY", FAR, strike, side)
          for k, strike in enumerate(STRIKES[::2]) for side in ("CE", "PE")],
        option(3000, "NIFTY", PAST, 26000, "CE"),
        option(4000, "RELIANCE", FAR, 1400, "CE"), option(4001, "RELIANCE", FAR, 1400, "PE")]


@pytest.fixture
def registry():
    return InstrumentRegistry.of(DUMP)


def test_an_underlying_is_found_by_name_with_its_spot_live_futures_and_options_in_order(registry):
    nifty = registry.underlying("NIFTY", TODAY)
    assert nifty.index is NIFTY_INDEX
    assert [f.instrument_token for f in nifty.futures] == [901, 900]  # live ones, nearest first
    assert nifty.expiries == [NEAR, FAR]  # the expired option is left out
    assert len(nifty.options) == 2 * 21 + 2 * 11
    assert [(o.expiry, o.strike, o.instrument_type) for o in nifty.options] == \
        sorted((o.expiry, o.strike, o.instrument_type) for o in nifty.options)
    assert len(nifty.options_expiring(FAR)) == 22
    # A stock's spot is its own listing (its derivatives are named by its symbol, the equity by the company).
    assert registry.underlying("RELIANCE", TODAY).index is RELIANCE
    assert registry.option_underlyings() == ["NIFTY", "RELIANCE"]
    unknown = registry.underlying("NOSUCH", TODAY)
    assert unknown.index is None and unknown.options == () and unknown.futures == ()


def test_a_plain_list_gives_what_the_registry_gives(registry):
    assert underlying_instruments(DUMP, "NIFTY", TODAY) == registry.underlying("NIFTY", TODAY)
    assert underlying_instruments(registry, "NIFTY", TODAY) == registry.underlying("NIFTY", TODAY)


def test_instruments_are_slotted_and_share_their_repeated_strings():
    from app.market.instruments import _infos

    rows = [(o.instrument_token, o.exchange_token, o.tradingsymbol, "".join(["NIF", "TY"]), "NFO", "NFO-OPT",
             o.instrument_type, date.fromordinal(o.expiry.toordinal()), o.strike, o.tick_size, o.lot_size)
            for o in DUMP if o.name == "NIFTY"]  # a new string and date per row, as the database hands them
    infos = _infos(rows)
    assert not hasattr(infos[0], "__dict__")
    assert len({id(i.name) for i in infos}) == 1 and len({id(i.expiry) for i in infos if i.expiry == NEAR}) == 1


def test_a_chain_is_the_strikes_around_the_atm_with_both_sides(registry):
    nifty = registry.underlying("NIFTY", TODAY)
    chosen = select_chain(nifty, NEAR, strikes_each_side=2, price=26_040.0)
    assert chosen.atm_strikes == {NEAR: 26000.0}
    assert sorted({o.strike for o in chosen.options}) == [25800, 25900, 26000, 26100, 26200]
    assert len(chosen.options) == 10 and chosen.strikes == 5
    assert chosen.tokens[:3] == [256265, 901, 900]  # the spot and the futures first

    edge = select_chain(nifty, NEAR, strikes_each_side=3, include_underlying=False, price=25_010.0)
    assert sorted({o.strike for o in edge.options}) == [25000, 25100, 25200, 25300]  # no strikes below
    assert edge.spot_and_futures == []

    everything = select_chain(nifty)  # no price: the middle strike is the ATM
    assert everything.expiries == [NEAR, FAR] and len(everything.options) == len(nifty.options)
    assert everything.atm_strikes[NEAR] == 26000.0 and everything.strikes == 21 + 11


def test_an_unknown_underlying_or_expiry_is_no_chain(registry):
    with pytest.raises(NoSuchChain, match="NOSUCH"):
        select_chain(registry.underlying("NOSUCH", TODAY))
    with pytest.raises(NoSuchChain, match="2026-12-15.*live expiries: 2026-12-08, 2026-12-29"):
        select_chain(registry.underlying("NIFTY", TODAY), date(2026, 12, 15))
