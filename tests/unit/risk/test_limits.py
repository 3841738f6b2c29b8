"""Risk limits without services: the lots limit per underlying with its "*" default, the unit price an
order is valued at, the day's P&L from Kite's net positions, the PUT body's validation, the beat entry."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from marshmallow import ValidationError

from app.risk.daily_loss import DailyPnl, breached, day_pnl
from app.risk.limit_errors import RiskLimitBreached
from app.risk.limit_prices import live_tick_prices, own_unit_price
from app.risk.limit_store import Limits
from app.risk.limits import check_lots, underlying_of
from tests.support.instruments import INFY, NIFTY_CE, NIFTY_FUT


def leg(instrument, quantity, **columns) -> dict:
    return {"exchange": instrument.exchange, "tradingsymbol": instrument.tradingsymbol,
            "instrument_token": instrument.instrument_token, "transaction_type": "BUY", "quantity": quantity,
            "product": "NRML", "order_type": "MARKET", "price": None, "trigger_price": None, **columns}


# --- lots per order, per underlying ---------------------------------------------------------------

def test_the_lots_limit_of_the_underlying_refuses_one_lot_more(instrument_registry):
    limits = Limits(max_lots_per_order={"NIFTY": 4, "*": 1})
    check_lots(leg(NIFTY_CE, 4 * 75), limits)                      # at the limit: fine
    check_lots(leg(NIFTY_FUT, 4 * 75), limits)                     # a future counts by its underlying too
    with pytest.raises(RiskLimitBreached) as refused:
        check_lots(leg(NIFTY_CE, 5 * 75), limits, leg_index=2)
    assert refused.value.details == {"limit": "max_lots_per_order", "limit_value": 4, "value": 5,
                                     "underlying": "NIFTY", "leg": 2}
    assert "5 lots of NIFTY" in str(refused.value) and "nothing was placed" in str(refused.value)


def test_an_underlying_not_named_takes_the_star_default_or_has_no_limit(instrument_registry):
    with pytest.raises(RiskLimitBreached) as refused:
        check_lots(leg(INFY, 3), Limits(max_lots_per_order={"NIFTY": 40, "*": 2}))
    assert refused.value.details["underlying"] == "INFY" and refused.value.details["value"] == 3
    check_lots(leg(INFY, 3000), Limits(max_lots_per_order={"NIFTY": 1}))   # no "*": INFY is unlimited
    with pytest.raises(RiskLimitBreached):
        check_lots(leg(NIFTY_CE, 2 * 75), Limits(max_lots_per_order={"NIFTY": 1}))


def test_the_underlying_of_a_derivative_is_its_name_and_of_an_equity_its_symbol():
    assert underlying_of(leg(NIFTY_CE, 75), NIFTY_CE) == "NIFTY"
    assert underlying_of(leg(INFY, 1), INFY) == "INFY"   # not "INFOSYS", the company's name in the dump


# --- what an order is worth -----------------------------------------------------------------------

@pytest.mark.parametrize("columns, unit", [
    ({"order_type": "LIMIT", "price": Decimal("101.50")}, Decimal("101.50")),
    ({"order_type": "SL", "price": Decimal("99.00"), "trigger_price": Decimal("98.50")}, Decimal("99.00")),
    ({"order_type": "SL-M", "trigger_price": Decimal("97.25")}, Decimal("97.25")),
    ({"order_type": "MARKET"}, None),
])
def test_an_order_is_valued_at_its_own_price_except_market(columns, unit):
    assert own_unit_price(leg(NIFTY_CE, 75, **columns)) == unit


def test_a_market_order_takes_the_streams_tick_only_when_it_is_stamped_recently():
    now = datetime(2026, 12, 1, 5, 0, 30, tzinfo=timezone.utc)
    tokens = {"NFO:FRESH": 1, "NFO:OLD": 2, "NFO:LTP_MODE": 3, "NFO:NONE": 4, "NFO:ZERO": 5}
    ticks = {1: {"last_price": 101.5, "exchange_timestamp": "2026-12-01T05:00:10Z"},
             2: {"last_price": 99.0, "exchange_timestamp": "2026-12-01T04:59:00Z"},   # 90 s old
             3: {"last_price": 98.0},                                                # no stamp: cannot tell
             5: {"last_price": 0.0, "exchange_timestamp": "2026-12-01T05:00:30Z"}}
    assert live_tick_prices(tokens, ticks, now) == {"NFO:FRESH": Decimal("101.50")}


# --- the day's P&L from Kite's net positions --------------------------------------------------------

def position(**fields) -> dict:
    return {"tradingsymbol": "X", "exchange": "NFO", "quantity": 0, "multiplier": 1, **fields}


def test_the_days_pnl_sums_kites_m2m_and_falls_back_to_pnl():
    at = datetime(2026, 12, 1, 5, 0, tzinfo=timezone.utc)
    figure = day_pnl([position(m2m=-1500.25, pnl=-9999, realised=-250.25),   # overnight: m2m is the day's
                      position(pnl=300.10, realised=300.10),                  # no m2m: its pnl
                      position(m2m=0, pnl=0)], at)
    assert (figure.pnl, figure.realised, figure.positions) == (Decimal("-1200.15"), Decimal("49.85"), 3)
    assert figure.loss == Decimal("1200.15")
    assert figure.view()["unrealised"] == -1250.0
    assert DailyPnl.loads(figure.dumps()) == figure
    assert day_pnl([position(m2m=10)]).loss == 0   # a gain is no loss


def test_an_unreadable_position_is_a_value_error():
    with pytest.raises(ValueError):
        day_pnl([position(m2m="NaN")])
    with pytest.raises((ValueError, KeyError)):
        day_pnl([position()])          # neither m2m nor pnl


def test_the_loss_breaches_when_it_reaches_the_limit():
    figure = day_pnl([position(m2m=-5000)])
    assert breached(figure, Limits(max_daily_loss=Decimal("5000")))
    assert not breached(figure, Limits(max_daily_loss=Decimal("5000.01")))
    assert not breached(figure, Limits())


# --- the PUT body ------------------------------------------------------------------------------------

def load(body: dict) -> dict:
    from app.web.api.risk_limits import LimitsRequestSchema

    return LimitsRequestSchema().load(body)


def test_a_valid_body_loads_with_every_limit_left_out_removed():
    assert load({"max_order_value": 250000, "max_lots_per_order": {"NIFTY": 10, "*": 2}}) == {
        "max_order_value": Decimal("250000.00"), "max_lots_per_order": {"NIFTY": 10, "*": 2},
        "max_open_orders": None, "max_daily_loss": None, "on_breach": "reject"}
    assert load({"max_daily_loss": 1234.5, "on_breach": "kill"})["max_daily_loss"] == Decimal("1234.50")


@pytest.mark.parametrize("body, field", [
    ({"max_order_value": 0}, "max_order_value"),
    ({"max_order_value": -5}, "max_order_value"),
    ({"max_order_value": "1000"}, "max_order_value"),          # a string is no number
    ({"max_order_value": 10.001}, "max_order_value"),          # below the paisa
    ({"max_daily_loss": True}, "max_daily_loss"),
    ({"max_open_orders": 2.5}, "max_open_orders"),
    ({"max_open_orders": 0}, "max_open_orders"),
    ({"max_lots_per_order": {"nifty": 2}}, "max_lots_per_order"),   # names are upper case
    ({"max_lots_per_order": {"NIFTY": 0}}, "max_lots_per_order"),
    ({"max_lots_per_order": {"NIFTY": 1.5}}, "max_lots_per_order"),
    ({"max_lots_per_order": [1]}, "max_lots_per_order"),
    ({"on_breach": "flatten"}, "on_breach"),
    ({"max_loss": 10}, "max_loss"),                            # unknown fields are refused
])
def test_a_bad_body_is_refused_naming_the_field(body, field):
    with pytest.raises(ValidationError) as refused:
        load(body)
    assert field in refused.value.messages


# --- the beat keeps the figure fresh -------------------------------------------------------------------

def test_the_beat_refreshes_the_daily_pnl_on_the_maintenance_queue():
    import celeryconfig
    from workers.celery_app import celery_app
    from workers.tasks.risk_limits import REFRESH_TASK

    entries = [e for e in celery_app.conf.beat_schedule.values() if e["task"] == REFRESH_TASK]
    assert len(entries) == 1 and entries[0]["schedule"] <= 10
    assert celeryconfig.task_routes["workers.tasks.risk_limits.*"] == {"queue": "maintenance"}
    assert "workers.tasks.risk_limits" in celery_app.conf.include   # the worker loads the task
