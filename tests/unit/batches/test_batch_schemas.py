"""What a valid batch request is (app/batches/schemas.py): 1 to 10 legs, each validated like a
single order and named by its index when it is not — with the registry in memory."""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from app.batches.schemas import AdvancedBatchRequestSchema, BatchRequestSchema, validate_legs
from tests.support.instruments import NIFTY_CE, NIFTY_PE

pytestmark = pytest.mark.usefixtures("instrument_registry")


def leg(instrument, side="BUY", **changes) -> dict:
    body = {"exchange": instrument.exchange, "tradingsymbol": instrument.tradingsymbol, "transaction_type": side,
            "quantity": instrument.lot_size, "product": "NRML", "order_type": "MARKET"}
    body.update(changes)
    return body


def leg_errors(legs, account_id="primary") -> dict:
    with pytest.raises(ValidationError) as refused:
        validate_legs(legs, account_id)
    assert set(refused.value.messages) == {"legs"}
    return refused.value.messages["legs"]


def test_legs_become_order_fields_in_order():
    legs = validate_legs([leg(NIFTY_CE, "SELL"), leg(NIFTY_PE, quantity=150)], "primary")
    assert [(f["tradingsymbol"], f["transaction_type"], f["quantity"]) for f in legs] == [
        ("NIFTY30JAN24000CE", "SELL", 75), ("NIFTY30JAN24000PE", "BUY", 150)]
    assert all(f["instrument_token"] and f["market_protection"] == -1.0 for f in legs)


def test_every_bad_leg_is_named_by_its_index_and_field():
    assert leg_errors([leg(NIFTY_CE), leg(NIFTY_PE, quantity=10), leg(NIFTY_CE, order_type="LIMIT")]) == {
        "1": {"quantity": ["quantity must be a multiple of the lot size 75"]},
        "2": {"price": ["price is required for LIMIT orders"]},
    }


def test_a_leg_is_an_object():
    assert leg_errors([leg(NIFTY_CE), "NIFTY"]) == {"1": {"_schema": ["an order must be a JSON object"]}}


def test_legs_belong_to_the_batchs_account():
    assert validate_legs([leg(NIFTY_CE, account_id="primary")], "primary")[0]["tradingsymbol"] == NIFTY_CE.tradingsymbol
    assert leg_errors([leg(NIFTY_CE, account_id="other")]) == {
        "0": {"account_id": ["all legs belong to the batch's account 'primary'"]}}


def test_a_leg_with_an_unknown_field_is_refused():
    assert leg_errors([leg(NIFTY_CE, legs=1)]) == {"0": {"legs": ["Unknown field."]}}


def symbols(legs) -> list[tuple[str, str, int]]:
    return [(leg["tradingsymbol"], leg["transaction_type"], leg["quantity"]) for leg in legs]


def test_a_batch_request_and_its_defaults():
    request = BatchRequestSchema().load({"legs": [leg(NIFTY_CE), leg(NIFTY_PE, "SELL")]})
    assert symbols(request.pop("legs")) == [("NIFTY30JAN24000CE", "BUY", 75), ("NIFTY30JAN24000PE", "SELL", 75)]
    assert request == {"rollback_on_failure": True, "execution": "parallel", "wait": 10.0, "margin_check": True}
    request = BatchRequestSchema().load({"legs": [leg(NIFTY_CE)], "rollback_on_failure": False,
                                         "execution": "buy_first", "wait": 0, "margin_check": False})
    assert (request["rollback_on_failure"], request["execution"], request["wait"], request["margin_check"]) == (
        False, "buy_first", 0, False)


def test_the_old_guides_orders_are_legs():
    assert symbols(BatchRequestSchema().load({"orders": [leg(NIFTY_CE)]})["legs"]) == [("NIFTY30JAN24000CE", "BUY", 75)]


@pytest.mark.parametrize("request_body, field", [
    ({"legs": []}, "legs"), ({"legs": [leg(NIFTY_CE)] * 11}, "legs"), ({}, "legs"), ({"legs": "all"}, "legs"),
    ({"legs": [leg(NIFTY_CE)], "execution": "sequential"}, "execution"),
    ({"legs": [leg(NIFTY_CE)], "wait": 61}, "wait"), ({"legs": [leg(NIFTY_CE)], "wait": -1}, "wait"),
    ({"legs": [leg(NIFTY_CE)], "margin_check": "maybe"}, "margin_check"),
    ({"legs": [leg(NIFTY_CE)], "account_id": "primary"}, "account_id"),  # only on /advanced
])
def test_malformed_batch_requests_name_the_field(request_body, field):
    with pytest.raises(ValidationError) as refused:
        BatchRequestSchema().load(request_body)
    assert field in refused.value.messages


def test_a_batch_has_one_to_ten_legs():
    with pytest.raises(ValidationError) as refused:
        BatchRequestSchema().load({"legs": [leg(NIFTY_CE)] * 11})
    assert refused.value.messages == {"legs": ["a batch has 1 to 10 legs"]}


def test_the_advanced_batch_names_its_account():
    assert AdvancedBatchRequestSchema().load({"account_id": "primary", "legs": [leg(NIFTY_CE)]})["account_id"] == "primary"
    for account in (None, ""):
        body = {"legs": [leg(NIFTY_CE)]} if account is None else {"legs": [leg(NIFTY_CE)], "account_id": account}
        with pytest.raises(ValidationError) as refused:
            AdvancedBatchRequestSchema().load(body)
        assert "account_id" in refused.value.messages
