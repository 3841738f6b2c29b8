"""app.greeks against QuantLib and 50-digit mpmath, plus no-arbitrage properties.

Every check runs the production (vectorised, fixed-iteration) kernels.
"""
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from app import greeks
from app.greeks import api, defaults, fastmath, kernels
from tests.unit.greeks.greeks_reference import exact_price_and_time_value, exact_vega, quantlib_greeks, ulp

IST = ZoneInfo("Asia/Kolkata")
NAMES = ("price", "delta", "gamma", "theta", "vega", "rho")
TICK = 0.05


def random_book(rng, n, intraday=True):
    """Strikes 0.7-1.3 x spot, expiries from minutes (or one day) to a year, vols 5-80 %, r = 10 %."""
    spot = np.exp(rng.uniform(np.log(50.0), np.log(60000.0), n))
    strike = spot * rng.uniform(0.7, 1.3, n)
    if intraday:
        t = np.exp(rng.uniform(np.log(5.0 / (365 * 24 * 60)), 0.0, n))
    else:
        t = rng.integers(1, 366, n) / 365.0
    sigma = rng.uniform(0.05, 0.80, n)
    is_call = rng.random(n) < 0.5
    return spot, strike, t, sigma, is_call


# --- the branch-free maths -------------------------------------------------------------

@njit(error_model="numpy")
def _apply(function_id, x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        if function_id == 0:
            out[i] = fastmath.exp(x[i])
        elif function_id == 1:
            out[i] = fastmath.log(x[i])
        else:
            out[i] = fastmath.erfcx(x[i])
    return out


def relative_error_in_epsilons(got, want):
    return np.max(np.abs(got - want) / np.abs(want)) / np.finfo(np.float64).eps


def test_exp_relative_error_is_below_two_epsilons():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-707.0, 709.7, 1500), rng.uniform(-1.0, 1.0, 1500), [0.0, -0.5, 1e-300]])
    want = np.array([float(mp.exp(mp.mpf(v))) for v in x])
    assert relative_error_in_epsilons(_apply(0, x), want) <= 2.0


def test_exp_and_log_edge_values():
    assert np.array_equal(_apply(0, np.array([np.inf, 710.0, -np.inf, -800.0])), [np.inf, np.inf, 0.0, 0.0])
    assert np.isnan(_apply(0, np.array([np.nan]))[0])
    logs = _apply(1, np.array([np.inf, 0.0, -1.0, np.nan, 1.0]))
    assert logs[0] == np.inf and logs[1] == -np.inf and np.isnan(logs[2]) and np.isnan(logs[3]) and logs[4] == 0.0


def test_log_relative_error_is_below_two_epsilons_including_subnormals_and_near_one():
    rng = np.random.default_rng(2)
    x = np.concatenate([np.exp(rng.uniform(-744.0, 709.0, 1500)), 1.0 + rng.uniform(-1e-6, 1e-6, 1000),
                        rng.uniform(0.5, 2.0, 1000)])
    want = np.array([float(mp.log(mp.mpf(v))) for v in x])
    assert relative_error_in_epsilons(_apply(1, x), want) <= 2.0


def test_erfcx_relative_error_is_below_four_epsilons_on_the_half_line():
    rng = np.random.default_rng(3)
    a = np.concatenate([rng.uniform(0.0, 30.0, 1500), np.exp(rng.uniform(-30.0, 20.0, 500)), [0.0]])
    with mp.workdps(80):   # exp(a²) of a ~ 5e8 needs the extra digits
        want = np.array([float(mp.exp(mp.mpf(v) ** 2) * mp.erfc(mp.mpf(v))) for v in a])
    assert relative_error_in_epsilons(_apply(2, a), want) <= 4.0


# --- Greeks against QuantLib -----------------------------------------------------------

def assert_matches_book(mine, reference):
    for name in NAMES:
        floor = 1e-6 * np.max(np.abs(reference[name]))
        error = np.abs(mine[name] - reference[name])
        allowed = np.maximum(1e-8 * np.abs(reference[name]), floor)
        assert np.all(error <= allowed), (name, np.max(error / allowed))


@pytest.mark.parametrize("q", [0.0, 0.03])
def test_greeks_match_quantlib_analytic_european_engine(q):
    rng = np.random.default_rng(10)
    n = 1500
    spot, strike, _, sigma, is_call = random_book(rng, n)
    days = rng.integers(1, 366, n)
    reference = quantlib_greeks(spot, strike, days, np.full(n, 0.10), np.full(n, q), sigma, is_call)
    assert_matches_book(greeks.greeks(spot, strike, days / 365.0, 0.10, q, sigma, is_call), reference)


def test_greeks_match_quantlib_on_the_threaded_path():
    rng = np.random.default_rng(11)
    n = api.PARALLEL_MIN_GREEKS + 17
    spot, strike, _, sigma, is_call = random_book(rng, n)
    days = rng.integers(1, 366, n)
    mine = greeks.greeks(spot, strike, days / 365.0, 0.10, 0.0, sigma, is_call)
    sample = rng.choice(n, 400, replace=False)
    reference = quantlib_greeks(spot[sample], strike[sample], days[sample], np.full(400, 0.10), np.zeros(400),
                                sigma[sample], is_call[sample])
    assert_matches_book({name: mine[name][sample] for name in NAMES}, reference)


def test_greeks_are_nan_without_time_or_volatility():
    result = greeks.greeks(100.0, [100.0, 100.0, 100.0], [0.0, -0.1, 0.5], 0.1, 0.0, [0.2, 0.2, 0.0], True)
    for name in NAMES:
        assert np.all(np.isnan(result[name]))


# --- implied volatility against 50-digit prices -----------------------------------------

@pytest.fixture(scope="module")
def solvable_book():
    """Random book priced at 50 digits, rounded to doubles, with its true vols."""
    rng = np.random.default_rng(20)
    n = 3000
    spot, strike, t, sigma, is_call = random_book(rng, n)
    q = np.where(rng.random(n) < 0.5, 0.0, 0.02)
    priced = [exact_price_and_time_value(*args) for args in zip(spot, strike, t, np.full(n, 0.1), q, sigma, is_call)]
    price, time_value = (np.array(column) for column in zip(*priced))
    keep = price > 1e-300   # an underflowed price says nothing
    return {name: value[keep] for name, value in dict(
        price=price, time_value=time_value, spot=spot, strike=strike, t=t, q=q, sigma=sigma, is_call=is_call).items()}


def solve(book, function=greeks.implied_volatility):
    return function(book["price"], book["spot"], book["strike"], book["t"], 0.1, book["q"], book["is_call"])


def test_implied_volatility_is_exact_where_time_value_is_at_least_a_tick(solvable_book):
    iv = solve(solvable_book)
    liquid = solvable_book["time_value"] >= TICK
    assert liquid.sum() > 1000
    assert not np.any(np.isnan(iv[liquid]))
    assert np.max(np.abs(iv[liquid] - solvable_book["sigma"][liquid])) <= 1e-10


def test_implied_volatility_of_thin_prices_is_within_1e_8_where_the_double_price_determines_it(solvable_book):
    # The vol is determined to 1e-10 when one ulp of the price moves it by less than that.
    b = solvable_book
    vega = np.array([exact_vega(*args) for args in zip(b["spot"], b["strike"], b["t"], np.full(len(b["t"]), 0.1),
                                                      b["q"], b["sigma"])])
    with np.errstate(divide="ignore"):   # vega underflows to 0 far out of the money
        determined = np.array([ulp(p) for p in b["price"]]) / vega <= 1e-10
    thin = (b["time_value"] < TICK) & determined
    assert thin.sum() > 300
    iv = solve(b)
    assert not np.any(np.isnan(iv[thin]))
    assert np.max(np.abs(iv[thin] - b["sigma"][thin])) <= 1e-8


def test_implied_volatility_handles_deep_tails_and_intraday_expiries():
    # Far out of the money, minutes to expiry, and long-dated high vol.
    cases = [  # spot, strike, t, sigma, is_call
        (24000.0, 24600.0, 20.0 / (365 * 24 * 60), 0.12, True),
        (24000.0, 23400.0, 20.0 / (365 * 24 * 60), 0.12, False),
        (24000.0, 31200.0, 7.0 / 365, 0.15, True),
        (100.0, 70.0, 1.0, 0.80, True),
        (100.0, 130.0, 1.0, 0.80, False),
        (100.0, 100.0, 1e-5, 0.05, True),
        (50000.0, 65000.0, 1.0, 0.05, True),
    ]
    spot, strike, t, sigma, is_call = (np.array(column) for column in zip(*cases))
    price = np.array([exact_price_and_time_value(*args)[0] for args in zip(spot, strike, t, np.full(len(t), 0.1),
                                                                           np.zeros(len(t)), sigma, is_call)])
    assert np.all(price > 1e-300)
    iv = greeks.implied_volatility(price, spot, strike, t, 0.1, 0.0, is_call)
    assert np.max(np.abs(iv - sigma)) <= 1e-8


def test_implied_volatility_is_nan_where_no_volatility_reproduces_the_price():
    spot, strike, t, r = 100.0, 90.0, 0.5, 0.1
    intrinsic_call = spot - strike * np.exp(-r * t)
    cases = [  # price, spot, strike, t, is_call
        (0.9 * intrinsic_call, spot, strike, t, True),             # below discounted intrinsic
        (intrinsic_call, spot, strike, t, True),                   # no time value at all
        (spot * 1.0001, spot, strike, t, True),                    # above spot: call bound
        (strike * np.exp(-r * t) * 1.0001, spot, strike, t, False),  # above discounted strike: put bound
        (5.0, spot, strike, 0.0, True),                            # expired
        (5.0, spot, strike, -0.01, True),                          # past expiry
        (0.0, spot, 130.0, t, True),                               # zero price
        (-1.0, spot, 130.0, t, True),                              # negative price
        (np.nan, spot, strike, t, True),
        (5.0, 0.0, strike, t, True),                               # no spot
        (5.0, spot, -strike, t, True),
        (np.inf, spot, strike, t, True),
    ]
    price, spot_, strike_, t_, is_call = (np.array(column) for column in zip(*cases))
    iv = greeks.implied_volatility(price, spot_, strike_, t_, r, 0.0, is_call)
    assert np.all(np.isnan(iv)), iv


def test_implied_volatility_is_nan_when_the_time_value_is_lost_in_the_last_digits():
    # Deep ITM, minutes to expiry: the exact time value is far below one ulp of the price.
    spot, strike, t = 24000.0, 20000.0, 30.0 / (365 * 24 * 60)
    price, time_value = exact_price_and_time_value(spot, strike, t, 0.1, 0.0, 0.2, True)
    assert 0.0 <= time_value < ulp(price)
    assert np.isnan(greeks.implied_volatility(price, spot, strike, t, 0.1, 0.0, True))


# --- the one-pass iv_and_greeks ----------------------------------------------------------

def test_iv_and_greeks_equals_greeks_at_the_implied_vol(solvable_book):
    b = solvable_book
    both = solve(b, greeks.iv_and_greeks)
    np.testing.assert_array_equal(both["iv"], solve(b))
    at_iv = greeks.greeks(b["spot"], b["strike"], b["t"], 0.1, b["q"], both["iv"], b["is_call"])
    for name in NAMES[1:]:
        np.testing.assert_allclose(both[name], at_iv[name], rtol=1e-13, atol=0.0)
        assert np.array_equal(np.isnan(both[name]), np.isnan(both["iv"]))


def test_iv_and_greeks_recovers_the_quantlib_greeks():
    rng = np.random.default_rng(30)
    n = 800
    spot, strike, _, sigma, is_call = random_book(rng, n)
    days = rng.integers(1, 366, n)
    reference = quantlib_greeks(spot, strike, days, np.full(n, 0.10), np.zeros(n), sigma, is_call)
    both = greeks.iv_and_greeks(reference["price"], spot, strike, days / 365.0, 0.10, 0.0, is_call)
    liquid = reference["price"] - np.maximum(np.where(is_call, 1, -1) * (spot - strike * np.exp(-0.1 * days / 365)),
                                             0) >= TICK
    assert np.max(np.abs(both["iv"][liquid] - sigma[liquid])) <= 1e-9   # QuantLib's price itself is rounded
    assert_matches_book({**{name: both[name][liquid] for name in NAMES[1:]}, "price": reference["price"][liquid]},
                        {name: reference[name][liquid] for name in NAMES})


def test_iv_and_greeks_threaded_path_equals_the_serial_path():
    rng = np.random.default_rng(31)
    n = 20_005
    step = api.PARALLEL_MIN_IMPLIED - 1   # chunks small enough for the serial build
    spot, strike, t, sigma, is_call = random_book(rng, n)
    price = greeks.greeks(spot, strike, t, 0.1, 0.0, sigma, is_call)["price"]
    whole = greeks.iv_and_greeks(price, spot, strike, t, 0.1, 0.0, is_call)
    chunks = [greeks.iv_and_greeks(price[i:i + step], spot[i:i + step], strike[i:i + step], t[i:i + step], 0.1, 0.0,
                                   is_call[i:i + step]) for i in range(0, n, step)]
    for name in ("iv",) + NAMES[1:]:
        np.testing.assert_allclose(whole[name], np.concatenate([c[name] for c in chunks]), rtol=1e-14, atol=0.0)


# --- broadcasting -------------------------------------------------------------------------

def test_scalars_arrays_and_per_option_rates_broadcast_alike():
    strike = np.array([[90.0, 100.0], [110.0, 120.0]])
    as_arrays = greeks.greeks(np.full((2, 2), 100.0), strike, np.full((2, 2), 0.3), np.full((2, 2), 0.1),
                              np.full((2, 2), 0.01), np.full((2, 2), 0.25), np.ones((2, 2), dtype=bool))
    as_scalars = greeks.greeks(100.0, strike, 0.3, 0.1, 0.01, 0.25, True)
    one = greeks.greeks(100.0, 110.0, 0.3, 0.1, 0.01, 0.25, True)
    for name in NAMES:
        assert as_scalars[name].shape == (2, 2)
        np.testing.assert_allclose(as_arrays[name], as_scalars[name], rtol=1e-15)
        assert np.ndim(one[name]) == 0
        np.testing.assert_allclose(one[name], as_scalars[name][1, 0], rtol=1e-15)
    price = as_scalars["price"]
    iv_scalar_rates = greeks.implied_volatility(price, 100.0, strike, 0.3, 0.1, 0.01, True)
    iv_array_rates = greeks.implied_volatility(price, 100.0, strike, 0.3, np.full((2, 2), 0.1), [0.01, 0.01], True)
    np.testing.assert_allclose(iv_scalar_rates, 0.25, rtol=1e-13)
    np.testing.assert_allclose(iv_array_rates, iv_scalar_rates, rtol=1e-15)
    single = greeks.iv_and_greeks(float(price[0, 0]), 100.0, 90.0, 0.3, 0.1, 0.01, True)
    assert abs(single["iv"] - 0.25) < 1e-13 and set(single) == {"iv", "delta", "gamma", "theta", "vega", "rho"}
    assert greeks.implied_volatility(np.array([]), 100.0, np.array([]), 0.3, 0.1, 0.0, True).shape == (0,)


# --- properties ---------------------------------------------------------------------------

option_inputs = dict(
    spot=st.floats(1.0, 1e5),
    moneyness=st.floats(0.5, 2.0),
    t=st.floats(1e-4, 3.0),
    sigma=st.floats(0.01, 2.0),
    r=st.floats(-0.02, 0.2),
    q=st.floats(0.0, 0.1),
)


@settings(max_examples=300, deadline=None)
@given(**option_inputs)
def test_put_call_parity(spot, moneyness, t, sigma, r, q):
    strike = spot * moneyness
    both = greeks.greeks(spot, strike, t, r, q, sigma, np.array([True, False]))
    forward_value = spot * np.exp(-q * t) - strike * np.exp(-r * t)
    assert abs((both["price"][0] - both["price"][1]) - forward_value) <= 1e-12 * (spot + strike)
    assert abs((both["delta"][0] - both["delta"][1]) - np.exp(-q * t)) <= 1e-12
    assert both["gamma"][0] == pytest.approx(both["gamma"][1], rel=1e-12)
    assert both["vega"][0] == pytest.approx(both["vega"][1], rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(is_call=st.booleans(), **option_inputs)
def test_price_rises_with_volatility_and_moves_with_strike(is_call, spot, moneyness, t, sigma, r, q):
    strike = spot * moneyness
    noise = 1e-13 * (spot + strike)
    by_vol = greeks.greeks(spot, strike, t, r, q, sigma * np.linspace(0.5, 2.0, 16), is_call)["price"]
    assert np.all(np.diff(by_vol) >= -noise)
    by_strike = greeks.greeks(spot, strike * np.linspace(0.8, 1.25, 16), t, r, q, sigma, is_call)["price"]
    assert np.all((np.diff(by_strike) if is_call else -np.diff(by_strike)) <= noise)


@settings(max_examples=300, deadline=None)
@given(is_call=st.booleans(), **option_inputs)
def test_implied_volatility_inverts_the_price(is_call, spot, moneyness, t, sigma, r, q):
    strike = spot * moneyness
    result = greeks.greeks(spot, strike, t, r, q, sigma, is_call)
    price = float(result["price"])
    intrinsic = max((1 if is_call else -1) * (spot * np.exp(-q * t) - strike * np.exp(-r * t)), 0.0)
    iv = greeks.implied_volatility(price, spot, strike, t, r, q, is_call)
    if price - intrinsic > 1e-6 * price and price > 1e-250:
        # The time value holds 20+ bits, so one ulp of price moves sigma by < 1e-9.
        assert abs(iv - sigma) <= 1e-8
    else:
        assert np.isnan(iv) or abs(iv - sigma) <= 0.05 * sigma   # little information left, but never junk


# --- time to expiry, defaults, warm-up ----------------------------------------------------

def test_time_to_expiry_counts_act_365_to_1530_ist():
    now = datetime(2025, 1, 30, 9, 15, tzinfo=IST)
    assert greeks.time_to_expiry(date(2025, 1, 30), now) == pytest.approx(6.25 / (365 * 24), rel=1e-12)
    assert greeks.time_to_expiry(np.datetime64("2025-02-06"), now.astimezone(timezone.utc)) == pytest.approx(
        (7 + 6.25 / 24) / 365, rel=1e-12)
    after_close = greeks.time_to_expiry(["2025-01-29", "2025-01-30", "2025-01-31"],
                                        datetime(2025, 1, 30, 16, 0, tzinfo=IST))
    np.testing.assert_allclose(after_close, [0.0, 0.0, 23.5 / (365 * 24)], rtol=1e-12)


def test_time_to_expiry_defaults_to_now_and_needs_an_aware_now():
    tomorrow = (datetime.now(IST) + timedelta(days=1)).date()
    assert 0.0 < greeks.time_to_expiry(tomorrow) <= 2.0 / 365
    with pytest.raises(ValueError):
        greeks.time_to_expiry(tomorrow, datetime(2025, 1, 1, 9, 0))


def test_defaults_come_from_the_environment(monkeypatch):
    from app.core import config

    before = config.get_settings()
    monkeypatch.setenv("OPTION_GREEKS_INTEREST_RATE", "0.065")
    monkeypatch.setenv("OPTION_GREEKS_DIVIDEND_YIELD", "0.012")
    try:
        config.configure()
        assert (defaults.default_rate(), defaults.default_dividend_yield()) == (0.065, 0.012)
        monkeypatch.delenv("OPTION_GREEKS_INTEREST_RATE")
        monkeypatch.delenv("OPTION_GREEKS_DIVIDEND_YIELD")
        config.configure()
        assert (defaults.default_rate(), defaults.default_dividend_yield()) == (0.10, 0.0)
    finally:
        config.configure(before)


def test_warm_up_compiles_every_build():
    greeks.warm_up()
    builds = (kernels.greeks_serial, kernels.greeks_parallel, kernels.implied_volatility_serial,
              kernels.implied_volatility_parallel, kernels.iv_and_greeks_serial, kernels.iv_and_greeks_parallel)
    for build in builds:
        assert len(build.signatures) == 2, build   # scalar r/q and per-option r/q
    assert kernels.greeks_one.signatures and kernels.iv_and_greeks_one.signatures
