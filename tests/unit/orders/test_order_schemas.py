"""What a valid order request is (app/orders/schemas.py): Kite's rules checked against the
instrument before anything is stored — with the registry in memory (`instrument_registry`)."""
from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest
from marshmallow import ValidationError

from app.orders.schemas import MAX_QUANTITY, validate_modification, validate_order
from tests.support.instruments import INFY, NIFTY_CE, NIFTY_FUT

pytestmark = pytest.mark.usefixtures("instrument_registry")


def body(instrument=INFY, **changes) -> dict:
    request = {"exchange": instrument.exchange, "tradingsymbol": instrument.tradingsymbol, "transaction_type": "BUY",
               "quantity": instrument.lot_size, "product": "NRML" if instrument.lot_size > 1 else "CNC",
               "order_type": "MARKET"}
    request.update(changes)
    return request


def errors(payload, **options) -> dict:
    with pytest.raises(ValidationError) as refused:
        validate_order(payload, **options)
    return refused.value.messages


def test_a_market_order_becomes_the_order_fields():
    fields = validate_order({"exchange": " nfo ", "tradingsymbol": " NIFTY30JAN24000CE ", "transaction_type": "buy",
                             "quantity": 150, "product": "nrml", "order_type": "market", "tag": "mine"})
    assert fields == {
        "exchange": "NFO", "tradingsymbol": "NIFTY30JAN24000CE", "instrument_token": NIFTY_CE.instrument_token,
        "transaction_type": "BUY", "quantity": 150, "product": "NRML", "order_type": "MARKET",
        "variety": "regular", "validity": "DAY", "price": None, "trigger_price": None, "disclosed_quantity": None,
        "market_protection": -1.0,  # Kite refuses MARKET through the API without it: automatic
        "client_tag": "mine",
    }


def test_prices_are_kept_only_where_the_order_type_uses_them():
    limit = validate_order(body(order_type="LIMIT", price=1500.05, trigger_price=1490.0))
    assert limit["price"] == Decimal("1500.05") and limit["trigger_price"] is None
    assert limit["market_protection"] is None  # a LIMIT order needs no protection
    stop = validate_order(body(order_type="SL", price=1500.0, trigger_price=1499.95, transaction_type="BUY"))
    assert (stop["price"], stop["trigger_price"]) == (Decimal("1500.00"), Decimal("1499.95"))
    stop_market = validate_order(body(order_type="SL-M", trigger_price=1499.95, price=1400.0))
    assert stop_market["price"] is None and stop_market["trigger_price"] == Decimal("1499.95")
    assert stop_market["market_protection"] == -1.0
    assert validate_order(body(price=1500.0))["price"] is None  # a MARKET order's price is ignored


def test_variety_validity_and_protection_as_given():
    fields = validate_order(body(variety=" AMO ", validity="ioc", market_protection=2.5, disclosed_quantity=0))
    assert (fields["variety"], fields["validity"], fields["market_protection"]) == ("amo", "IOC", 2.5)
    assert fields["disclosed_quantity"] == 0


def test_derivatives_trade_in_lots_with_nrml_or_mis():
    assert validate_order(body(NIFTY_CE, quantity=75 * 3, product="MIS"))["quantity"] == 225
    assert errors(body(NIFTY_CE, quantity=70, product="CNC")) == {
        "quantity": ["quantity must be a multiple of the lot size 75"],
        "product": ["F&O orders take product NRML or MIS"]}
    assert validate_order(body(INFY, quantity=7, product="CNC"))["quantity"] == 7  # equity: any quantity


def test_prices_must_be_on_the_instruments_tick():
    assert errors(body(order_type="LIMIT", price=100.03)) == {
        "price": ["price must be a positive multiple of the tick size 0.05"]}
    assert errors(body(NIFTY_FUT, order_type="LIMIT", price=24000.05)) == {
        "price": ["price must be a positive multiple of the tick size 0.1"]}
    assert errors(body(order_type="SL", price=100.0, trigger_price=99.99)) == {
        "trigger_price": ["trigger_price must be a positive multiple of the tick size 0.05"]}
    assert validate_order(body(NIFTY_FUT, order_type="LIMIT", price=24000.3))["price"] == Decimal("24000.30")


@pytest.mark.parametrize("changes, field", [
    ({"order_type": "LIMIT", "price": 1e-320}, "price"),      # was stored as 0.00 and rejected by the broker
    ({"order_type": "LIMIT", "price": 5e-324}, "price"),
    ({"order_type": "LIMIT", "price": 0.0049}, "price"),
    ({"order_type": "SL-M", "trigger_price": 1e-300}, "trigger_price"),
    ({"order_type": "SL", "price": 1e-320, "trigger_price": 1e-320}, "price"),
])
def test_a_price_below_one_tick_is_no_price(changes, field):
    assert errors(body(**changes))[field] == [f"{field} must be a positive multiple of the tick size 0.05"]


@pytest.mark.parametrize("price, stored", [(0.05, "0.05"), (0.05 * 3, "0.15"), (1e9, "1000000000.00"),
                                           (0.1 + 0.2, "0.30"), (24000.3, "24000.30")])
def test_a_price_a_whole_number_of_ticks_away_is_on_the_tick(price, stored):
    """Decimal steps from the float as written; float noise of a computed price (0.1 + 0.2) passes."""
    instrument = NIFTY_FUT if price == 24000.3 else INFY
    assert validate_order(body(instrument, order_type="LIMIT", price=price))["price"] == Decimal(stored)


@pytest.mark.parametrize("changes, field, message", [
    ({"order_type": "LIMIT"}, "price", "price is required for LIMIT orders"),
    ({"order_type": "SL", "price": 100.0}, "trigger_price", "trigger_price is required for SL orders"),
    ({"order_type": "SL-M"}, "trigger_price", "trigger_price is required for SL-M orders"),
    ({"order_type": "SL", "price": 100.0, "trigger_price": 100.05}, "trigger_price",
     "trigger_price of a stop-loss BUY must not exceed price"),
    ({"order_type": "SL", "price": 100.0, "trigger_price": 99.95, "transaction_type": "SELL"}, "trigger_price",
     "trigger_price of a stop-loss SELL must not be below price"),
    ({"market_protection": 0}, "market_protection", "use -1 (automatic) or a percentage above 0 up to 100"),
    ({"market_protection": 100.5}, "market_protection", "use -1 (automatic) or a percentage above 0 up to 100"),
    ({"quantity": 5, "disclosed_quantity": 6}, "disclosed_quantity", "disclosed_quantity must not exceed quantity"),
])
def test_kites_rules_name_the_field(changes, field, message):
    assert errors(body(**changes)) == {field: [message]}


@pytest.mark.parametrize("changes, field", [
    ({"quantity": "1"}, "quantity"), ({"quantity": 1.0}, "quantity"), ({"quantity": 0}, "quantity"),
    ({"quantity": MAX_QUANTITY + 1}, "quantity"), ({"price": float("nan"), "order_type": "LIMIT"}, "price"),
    ({"price": -1, "order_type": "LIMIT"}, "price"), ({"transaction_type": "HOLD"}, "transaction_type"),
    ({"product": "BO"}, "product"), ({"order_type": "ICEBERG"}, "order_type"), ({"variety": "co"}, "variety"),
    ({"validity": "GTT"}, "validity"), ({"tag": "x" * 21}, "tag"), ({"tag": ""}, "tag"),
    ({"exchange": ""}, "exchange"), ({"extra": 1}, "extra"),
])
def test_malformed_fields_are_refused_by_name(changes, field):
    assert field in errors(body(**changes))


def test_required_fields():
    assert set(errors({})) == {"exchange", "tradingsymbol", "transaction_type", "quantity", "product", "order_type"}


def test_an_order_is_a_json_object():
    for payload in ([body()], "BUY INFY", None, 42):
        assert errors(payload) == {"_schema": ["an order must be a JSON object"]}


def test_an_unknown_instrument_is_refused_without_a_refresh():
    """The registry is fresh (loaded now): an unknown symbol needs no broker and no Redis to refuse."""
    assert errors(body(tradingsymbol="NIFTY30JAN99999CE", exchange="NFO")) == {
        "tradingsymbol": ["NFO:NIFTY30JAN99999CE is not a known instrument"]}
    assert errors(body(exchange="BSE")) == {"tradingsymbol": ["BSE:INFY is not a known instrument"]}


def test_unknown_fields_are_refused_unless_ignored():
    assert errors(body(account_id="primary")) == {"account_id": ["Unknown field."]}
    assert validate_order(body(account_id="primary"), ignore_unknown=True)["tradingsymbol"] == "INFY"


# --- validity TTL ----------------------------------------------------------------------------

def test_a_ttl_order_keeps_its_minutes():
    fields = validate_order(body(NIFTY_CE, order_type="LIMIT", price=120.5, validity="ttl", validity_ttl=15))
    assert (fields["validity"], fields["validity_ttl"]) == ("TTL", 15)
    assert validate_order(body(validity="TTL", validity_ttl=1))["validity_ttl"] == 1
    assert validate_order(body(validity="TTL", validity_ttl=1440))["validity_ttl"] == 1440
    # A MARKET order keeps its automatic protection whatever its validity.
    assert validate_order(body(validity="TTL", validity_ttl=5))["market_protection"] == -1.0


def test_only_ttl_orders_carry_validity_ttl():
    """Other orders' columns (and so their Idempotency-Key hash) are what they were before TTL."""
    assert "validity_ttl" not in validate_order(body(validity="DAY"))
    assert "validity_ttl" not in validate_order(body(validity="IOC"))


@pytest.mark.parametrize("changes, message", [
    ({"validity": "TTL"}, "validity_ttl is required for TTL orders: whole minutes from 1 to 1440"),
    ({"validity": "TTL", "validity_ttl": None}, "validity_ttl is required for TTL orders: whole minutes from 1 to 1440"),
    ({"validity_ttl": 5}, "validity_ttl is only for TTL orders (validity TTL)"),
    ({"validity": "IOC", "validity_ttl": 5}, "validity_ttl is only for TTL orders (validity TTL)"),
    ({"validity": "TTL", "validity_ttl": 0}, "validity_ttl is whole minutes from 1 to 1440"),
    ({"validity": "TTL", "validity_ttl": 1441}, "validity_ttl is whole minutes from 1 to 1440"),
    ({"validity": "TTL", "validity_ttl": -5}, "validity_ttl is whole minutes from 1 to 1440"),
])
def test_validity_ttl_rules_name_the_field(changes, message):
    assert errors(body(**changes)) == {"validity_ttl": [message]}


@pytest.mark.parametrize("value", [1.5, "5", True, [5]])
def test_validity_ttl_is_a_whole_number(value):
    assert "validity_ttl" in errors(body(validity="TTL", validity_ttl=value))


def test_validity_ttl_errors_come_with_the_other_rules():
    assert errors(body(order_type="LIMIT", validity="TTL")) == {
        "price": ["price is required for LIMIT orders"],
        "validity_ttl": ["validity_ttl is required for TTL orders: whole minutes from 1 to 1440"]}


# --- modifications ---------------------------------------------------------------------------

def placed(instrument=NIFTY_CE, **changes):
    order = dict(exchange=instrument.exchange, tradingsymbol=instrument.tradingsymbol, transaction_type="BUY",
                 order_type="LIMIT", quantity=150, price=Decimal("120.50"), trigger_price=None, filled_quantity=0,
                 market_protection=None)
    order.update(changes)
    return SimpleNamespace(**order)


def modification_errors(order, payload) -> dict:
    with pytest.raises(ValidationError) as refused:
        validate_modification(order, payload)
    return refused.value.messages


def test_a_modification_gives_the_changed_parameters():
    assert validate_modification(placed(), {"price": 121.45}) == {"price": 121.45}
    assert validate_modification(placed(), {"quantity": 225, "validity": "ioc"}) == {"quantity": 225, "validity": "IOC"}


def test_a_modification_is_checked_against_the_order_it_changes():
    assert modification_errors(placed(), {"quantity": 100}) == {
        "quantity": ["quantity must be a multiple of the lot size 75"]}
    assert modification_errors(placed(filled_quantity=150), {"quantity": 75}) == {
        "quantity": ["quantity must not be below the filled quantity"]}
    assert modification_errors(placed(), {"price": 120.52}) == {
        "price": ["price must be a positive multiple of the tick size 0.05"]}
    assert modification_errors(placed(), {"order_type": "SL"}) == {
        "trigger_price": ["trigger_price is required for SL orders"]}


def test_a_modification_to_market_keeps_or_sets_protection():
    assert validate_modification(placed(), {"order_type": "MARKET"}) == {"order_type": "MARKET",
                                                                       "market_protection": -1}
    assert validate_modification(placed(order_type="MARKET", price=None, market_protection=3.0),
                                 {"quantity": 75}) == {"quantity": 75, "market_protection": 3.0}


def test_a_modification_cannot_make_an_order_ttl():
    """kiteconnect's modify_order has no validity_ttl: the lifetime could not be sent."""
    assert "validity" in modification_errors(placed(), {"validity": "TTL"})
    assert "validity_ttl" in modification_errors(placed(), {"validity_ttl": 5})


def test_an_empty_or_malformed_modification_is_refused():
    assert modification_errors(placed(), {})["_schema"][0].startswith("give at least one of: ")
    assert modification_errors(placed(), [1]) == {"_schema": ["a modification must be a JSON object"]}
    assert "tradingsymbol" in modification_errors(placed(), {"tradingsymbol": "OTHER"})
