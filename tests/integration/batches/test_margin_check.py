"""The margin check before a basket (app/broker/margin_check.py), through the REST API against the
paper broker's margin model: a basket whose `final` margin (hedges counted) exceeds the account's
available margin is refused with 422 and nothing is stored or sent; a check that cannot be made
is a 503 and nothing is stored or sent either; a refused request leaves its Idempotency-Key free."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from app.broker.margin_check import margin_check_refusals_total, margin_orders
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.redis_client import get_redis
from app.models import Batch, Order
from app.orders.schemas import validate_order
from tests.support.batches import iron_condor, leg, within_rate_limit
from tests.support.environment import BROKER_ACCOUNTS
from tests.support.waiting import wait_for

PRIMARY_KEY = BROKER_ACCOUNTS["primary"]["api_key"]
SHORT_OF_FUNDS = 50_000.0  # a naked NIFTY short needs about ₹1.2 lakh on the paper broker, a strangle ₹1.5 lakh
PLENTY = 10_000_000.0


def submit(client, headers, legs, key=None, **options):
    request_headers = {**headers["primary"], **({"Idempotency-Key": key} if key else {})}
    return client.post("/accounts/primary/batch-orders", headers=request_headers,
                       json={"legs": legs, "wait": 20, **options})


def short_strangle(chain) -> list[dict]:
    by_key, strikes = chain
    mid = len(strikes) // 2
    return [leg(by_key[(strikes[mid - 2], "PE")], "SELL"), leg(by_key[(strikes[mid + 2], "CE")], "SELL")]


def one_bought_call(chain) -> list[dict]:
    by_key, strikes = chain
    return [leg(by_key[(strikes[len(strikes) // 2], "CE")], "BUY")]


def stored_rows() -> tuple[int, int]:
    """The primary account's batches and orders in the database."""
    with session_scope() as session:
        return (session.scalar(select(func.count()).select_from(Batch).where(Batch.account_id == "primary")),
                session.scalar(select(func.count()).select_from(Order).where(Order.account_id == "primary")))


def broker_order_count(broker) -> int:
    return len(broker.orders(PRIMARY_KEY))


def refusals(request: str, reason: str) -> float:
    return float(get_redis().hget(margin_check_refusals_total.key, json.dumps([request, reason])) or 0)


def broker_basket_margin(kite, legs) -> dict:
    """What the broker itself says of the basket, asked the way the service asks."""
    orders = margin_orders([validate_order(body) for body in legs])
    return within_rate_limit(lambda: kite.basket_order_margins(orders, consider_positions=True))


def assert_nothing_stored_or_sent(before_rows, before_sent, broker) -> None:
    assert stored_rows() == before_rows  # no batch row, no order row: nothing for a task to carry
    assert broker_order_count(broker) == before_sent  # and nothing reached the broker


def test_a_naked_short_beyond_the_funds_is_refused_and_its_key_stays_free(
        client, headers, batch_stack, chain, kite, available_margin):
    legs = short_strangle(chain)
    available = available_margin(SHORT_OF_FUNDS)
    expected = broker_basket_margin(kite, legs)["final"]["total"]
    key = f"margin-{uuid.uuid4().hex}"
    before_rows, before_sent = stored_rows(), broker_order_count(batch_stack)
    counted = refusals("batch", "insufficient_margin")

    response = submit(client, headers, legs, key=key)
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["code"] == "insufficient_margin" and error["message"].startswith("insufficient margin")
    required, answered = error["details"]["required"], error["details"]["available"]
    assert required == pytest.approx(expected, rel=0.05) and answered == pytest.approx(available, abs=5_000)
    assert required > answered and error["details"]["shortfall"] == pytest.approx(required - answered, abs=0.01)
    assert round(required, 2) == required and round(answered, 2) == answered  # rupees to the paisa
    assert_nothing_stored_or_sent(before_rows, before_sent, batch_stack)
    assert refusals("batch", "insufficient_margin") == counted + 1

    available_margin(PLENTY)  # funds added: the same request under the same key now goes through
    response = submit(client, headers, legs, key=key)
    assert response.status_code == 200, response.json
    assert response.json["status"] == "COMPLETED", response.json
    assert stored_rows()[0] == before_rows[0] + 1
    assert broker_order_count(batch_stack) == before_sent + 2


def test_a_hedged_iron_condor_whose_final_margin_fits_goes_through(
        client, headers, batch_stack, chain, kite, available_margin):
    legs = iron_condor(chain)
    margin = broker_basket_margin(kite, legs)
    available = available_margin(2 * margin["final"]["total"])
    # The point of asking for `final`: the legs' sum without the hedge would not fit.
    assert margin["final"]["total"] < available < margin["initial"]["total"]

    # Long legs first, so that no short leg reaches the broker's RMS check unhedged.
    response = submit(client, headers, legs, execution="buy_first")
    assert response.status_code == 200, response.json
    batch = response.json
    assert batch["status"] == "COMPLETED" and batch["succeeded"] == 4, batch
    assert all(l["broker_order_id"] and l["status"] in ("OPEN", "COMPLETE") for l in batch["legs"])


def test_without_the_check_the_basket_is_sent_and_the_broker_rejects_its_legs(
        client, headers, batch_stack, chain, available_margin):
    legs = short_strangle(chain)
    available_margin(SHORT_OF_FUNDS)
    response = submit(client, headers, legs, margin_check=False)
    assert response.status_code == 200, response.json
    batch = response.json
    # Both legs went out, once each (counted by their tags: the shared account may see a late order of an earlier
    # test); the broker accepted each and its RMS then rejected it for margin. Nothing filled, so the
    # rollback had nothing to undo.
    tags = {client.get(f"/orders/{l['order_id']}", headers=headers["primary"]).json["tag"] for l in batch["legs"]}
    assert len(tags) == 2 and sum(o["tag"] in tags for o in batch_stack.orders(PRIMARY_KEY)) == 2
    assert [l["status"] for l in batch["legs"]] == ["REJECTED", "REJECTED"], batch
    assert all("Insufficient funds" in l["error"] for l in batch["legs"]), batch["legs"]
    assert (batch["status"], batch["succeeded"], batch["failed"], batch["rollback"]) == ("ROLLED_BACK", 0, 2, [])


def test_a_single_order_may_ask_for_the_check(client, headers, batch_stack, chain, available_margin):
    by_key, strikes = chain
    mid = len(strikes) // 2
    short_put = leg(by_key[(strikes[mid - 2], "PE")], "SELL")
    available_margin(SHORT_OF_FUNDS)
    before_rows, before_sent = stored_rows(), broker_order_count(batch_stack)
    counted = refusals("order", "insufficient_margin")

    for path, body in (("/accounts/primary/orders", {**short_put, "margin_check": True}),
                       ("/orders/place", {**short_put, "margin_check": True, "account_id": "primary"})):
        response = client.post(path, headers=headers["primary"], json=body)
        assert response.status_code == 422, (path, response.json)
        error = response.json["error"]
        assert error["code"] == "insufficient_margin" and error["details"]["required"] > error["details"]["available"]
    assert_nothing_stored_or_sent(before_rows, before_sent, batch_stack)
    assert refusals("order", "insufficient_margin") == counted + 2

    # Single orders are not checked unless they ask: this one is accepted, and the broker refuses it.
    response = client.post("/accounts/primary/orders", headers=headers["primary"], json=short_put)
    assert response.status_code == 202, response.json
    rejected = wait_for(lambda: (o := client.get(f"/orders/{response.json['id']}", headers=headers["primary"]).json)
                        ["status"] == "REJECTED" and o, what="the broker's margin rejection")
    assert "Insufficient funds" in rejected["error"]
    # An order that fits is checked and accepted.
    bought = leg(by_key[(strikes[mid - 4], "PE")], "BUY")
    response = client.post("/orders/place", headers=headers["primary"],
                           json={**bought, "margin_check": True, "account_id": "primary"})
    assert response.status_code == 202, response.json
    wait_for(lambda: client.get(f"/orders/{response.json['id']}", headers=headers["primary"]).json["status"]
             == "COMPLETE", what="the checked order filled")  # at the broker before the next test counts


def timeout_fault() -> dict:
    return {"latency_ms": (get_settings().broker_timeout_s + 1) * 1000}


@pytest.mark.parametrize("fault, cause", [
    ({"error_rate": 1.0, "error_status": 503}, "NetworkException (503)"),
    ({"error_rate": 1.0, "error_status": 429}, "(429)"),
    (timeout_fault, "ReadTimeout"),
], ids=["broker-down", "broker-rate-limited", "broker-timeout"])
def test_a_broker_that_cannot_answer_the_check_is_a_503_and_nothing_is_placed(
        client, headers, batch_stack, chain, fault, cause):
    legs = one_bought_call(chain)
    key = f"margin-{uuid.uuid4().hex}"
    before_rows, before_sent = stored_rows(), broker_order_count(batch_stack)
    counted = refusals("batch", "unavailable")
    try:
        batch_stack.set_faults(**(fault() if callable(fault) else fault))
        response = submit(client, headers, legs, key=key)
        single = client.post("/accounts/primary/orders", headers=headers["primary"],
                             json={**legs[0], "margin_check": True})
    finally:
        batch_stack.clear_faults()
    assert response.status_code == 503, response.json
    error = response.json["error"]
    assert error["code"] == "margin_check_unavailable", error
    assert cause in error["details"]["cause"] and error["details"]["retryable"] is True
    assert "Retry" in error["message"] and '"margin_check": false' in error["message"]
    assert single.status_code == 503 and single.json["error"]["code"] == "margin_check_unavailable"
    assert_nothing_stored_or_sent(before_rows, before_sent, batch_stack)
    assert refusals("batch", "unavailable") == counted + 1

    response = submit(client, headers, legs, key=key)  # the broker is back: the same key goes through
    assert response.status_code == 200 and response.json["status"] == "COMPLETED", response.json


def test_the_check_keeps_to_kites_limit_on_other_calls(client, headers, batch_stack, chain):
    from app.broker.rate_limit import OTHER_CALLS_PER_SECOND, other_calls_rate_limiter

    legs = one_bought_call(chain)
    limiter = other_calls_rate_limiter()
    before_rows, before_sent = stored_rows(), broker_order_count(batch_stack)
    try:
        # Two seconds of the account's non-order calls already spoken for: the check would wait too long.
        for _ in range(2 * OTHER_CALLS_PER_SECOND):
            assert limiter.reserve("primary", placement=False, max_wait_s=10).granted
        response = submit(client, headers, legs)
    finally:
        limiter.reset("primary")
    assert response.status_code == 503, response.json
    details = response.json["error"]["details"]
    assert response.json["error"]["code"] == "margin_check_unavailable"
    assert "10 requests per second" in details["cause"] and details["retry_after_s"] > 0
    assert int(response.headers["Retry-After"]) >= 1
    assert_nothing_stored_or_sent(before_rows, before_sent, batch_stack)


def test_a_batch_already_placed_under_a_key_is_given_back_without_a_second_check(
        client, headers, batch_stack, chain, available_margin):
    legs = short_strangle(chain)
    key = f"margin-{uuid.uuid4().hex}"
    first = submit(client, headers, legs, key=key)
    assert first.status_code == 200 and first.json["status"] == "COMPLETED", first.json
    available_margin(SHORT_OF_FUNDS)  # the funds the first batch used are gone: a new check would refuse it

    again = submit(client, headers, legs, key=key)
    assert again.status_code == 200, again.json
    assert again.json["batch_id"] == first.json["batch_id"]
