"""Admission rules without services (app/orders/admission.py and what carries them): the backlog a rate
allows, the order's expiry and the margins around it, its rank among the placements of its Zerodha
user, `expire_after_s` in order and batch requests, and EXPIRED as a final status of parents and webhooks.
The limiter and the worker against Redis, PostgreSQL and the paper broker:
tests/integration/orders/test_admission*.py."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from marshmallow import ValidationError

from app.broker.rate_limit import PRIORITY_RANK_OFFSET
from app.core.config import ORDER_MAX_QUEUE_S_LIMIT, Settings, parse_backlog_max, parse_max_queue_s
from app.models import Order
from app.orders import admission
from app.orders.parent_status import aggregate
from app.orders.schemas import validate_order
from app.webhooks.events import events_for
from tests.support.instruments import INFY, NIFTY_CE

ACCEPTED = datetime(2026, 12, 1, 4, 0, 0, tzinfo=timezone.utc)


def settings(**changes) -> Settings:
    base = dict(order_rate_per_second=10, order_rate_per_minute=400, order_max_queue_s=30.0, order_backlog_max=None)
    return replace(Settings(), **{**base, **changes})


def order(**changes) -> Order:
    fields = dict(id="o1", account_id="primary", status="QUEUED", attempts=0, role="order", accepted_at=ACCEPTED,
                  created_at=ACCEPTED, expires_at=ACCEPTED + timedelta(seconds=30), expire_after_s=None)
    return Order(**{**fields, **changes})


def test_the_backlog_is_what_the_rate_sends_before_the_orders_expire():
    assert admission.placement_rate(settings()) == pytest.approx(400 / 60)  # the minute limit binds
    assert admission.backlog_max(settings()) == 200  # 30 s × 6.67 placements a second
    assert admission.backlog_max(settings(order_rate_per_minute=1200)) == 300  # now the second's 10 bind
    assert admission.backlog_max(settings(order_max_queue_s=5.0, order_rate_per_second=2)) == 10
    assert admission.backlog_max(settings(order_backlog_max=7)) == 7  # ORDER_BACKLOG_MAX overrides


def test_max_queue_and_backlog_settings_are_checked_at_start_up():
    assert parse_max_queue_s("30") == 30.0 and parse_max_queue_s(str(ORDER_MAX_QUEUE_S_LIMIT)) == 60.0
    for bad in ("0", "0.5", "61", "-3", "nan", "soon"):
        with pytest.raises(ValueError, match="ORDER_MAX_QUEUE_S"):
            parse_max_queue_s(bad)
    assert parse_backlog_max("") is None and parse_backlog_max("150") == 150
    for bad in ("0", "-1", "1.5", "many"):
        with pytest.raises(ValueError, match="ORDER_BACKLOG_MAX"):
            parse_backlog_max(bad)


def test_an_order_expires_after_its_own_window_or_the_default():
    assert admission.expiry_for(ACCEPTED, 5, settings()) == ACCEPTED + timedelta(seconds=5)
    assert admission.expiry_for(ACCEPTED, None, settings(order_max_queue_s=12.0)) == ACCEPTED + timedelta(seconds=12)
    # An order stored before expiries existed lapses ORDER_MAX_QUEUE_S after it was accepted.
    legacy = order(expires_at=None, expire_after_s=8)
    assert admission.expiry_of(legacy) == ACCEPTED + timedelta(seconds=8)


def test_the_last_slot_and_the_last_send_leave_room_before_the_expiry():
    pending = order()
    expires = pending.expires_at
    assert admission.latest_slot(pending) == expires.timestamp() - admission.SLOT_MARGIN_S
    assert not admission.too_late_to_send(pending, expires - timedelta(seconds=admission.SEND_MARGIN_S + 0.01))
    assert admission.too_late_to_send(pending, expires - timedelta(seconds=admission.SEND_MARGIN_S))
    assert admission.too_late_to_send(pending, expires + timedelta(seconds=1))
    assert admission.SEND_MARGIN_S < admission.SLOT_MARGIN_S  # a task a little late for its slot still sends


def test_placements_rank_in_arrival_order_with_batches_rollbacks_and_square_offs_first():
    first, later = order(), order(accepted_at=ACCEPTED + timedelta(seconds=1))
    assert admission.rank_of(first) < admission.rank_of(later)
    for role in ("leg", "rollback", "square_off"):
        urgent = order(role=role, accepted_at=ACCEPTED + timedelta(seconds=20))
        assert admission.rank_of(urgent) == urgent.accepted_at.timestamp() - PRIORITY_RANK_OFFSET
        assert admission.rank_of(urgent) < admission.rank_of(first)
    assert admission.rank_of(order(role="slice")) == admission.rank_of(first)  # a slice is a single order


def test_expiry_errors_say_when():
    pending = order()
    assert admission.lapsed_error(pending) == "expired: not sent by its expiry (2026-12-01T04:00:30.000Z)"
    text = admission.no_slot_error(pending, "zerodha:AB1234", (ACCEPTED + timedelta(seconds=41)).timestamp())
    assert text == ("expired: not sent — the order rate of Zerodha account AB1234 had no send slot before its "
                    "expiry (2026-12-01T04:00:30.000Z); the earliest was 2026-12-01T04:00:41.000Z")


@pytest.mark.usefixtures("instrument_registry")
def test_expire_after_s_is_whole_seconds_within_the_limit_and_stored_only_when_given():
    body = {"exchange": INFY.exchange, "tradingsymbol": INFY.tradingsymbol, "transaction_type": "BUY",
            "quantity": 1, "product": "CNC", "order_type": "MARKET"}
    assert "expire_after_s" not in validate_order(body)  # the request hash of older requests is unchanged
    assert validate_order({**body, "expire_after_s": 5})["expire_after_s"] == 5
    for bad in (0, ORDER_MAX_QUEUE_S_LIMIT + 1, 2.5, "5"):
        with pytest.raises(ValidationError) as refused:
            validate_order({**body, "expire_after_s": bad})
        assert "expire_after_s" in refused.value.messages


@pytest.mark.usefixtures("instrument_registry")
def test_a_batch_gives_its_expire_after_s_to_legs_without_their_own():
    from app.batches.schemas import BatchRequestSchema

    leg = {"exchange": NIFTY_CE.exchange, "tradingsymbol": NIFTY_CE.tradingsymbol, "transaction_type": "BUY",
           "quantity": NIFTY_CE.lot_size, "product": "NRML", "order_type": "MARKET"}
    loaded = BatchRequestSchema().load({"legs": [leg, {**leg, "expire_after_s": 3}], "expire_after_s": 9})
    assert [l["expire_after_s"] for l in loaded["legs"]] == [9, 3]
    assert "expire_after_s" not in loaded
    assert all("expire_after_s" not in l for l in BatchRequestSchema().load({"legs": [leg]})["legs"])
    with pytest.raises(ValidationError):
        BatchRequestSchema().load({"legs": [leg], "expire_after_s": 0})


def _slice(index: int, status: str, filled: int = 0):
    return SimpleNamespace(id=f"s{index}", slice_index=index, quantity=10, status=status, filled_quantity=filled,
                           average_price=None, error=None if status == "COMPLETE" else f"{status} reason",
                           status_message=None)


def test_a_parent_whose_slices_expired_unfilled_is_expired():
    assert aggregate([_slice(0, "EXPIRED"), _slice(1, "EXPIRED")]).status == "EXPIRED"
    assert aggregate([_slice(0, "EXPIRED"), _slice(1, "CANCELLED")]).status == "EXPIRED"
    assert aggregate([_slice(0, "EXPIRED"), _slice(1, "REJECTED")]).status == "REJECTED"  # a failure says more
    partial = aggregate([_slice(0, "COMPLETE", 10), _slice(1, "EXPIRED")])
    assert partial.status == "PARTIAL" and "slice 2/2 (order s1, quantity 10) EXPIRED" in partial.error
    assert aggregate([_slice(0, "EXPIRED"), _slice(1, "QUEUED")]).status == "OPEN"  # one still live


def test_an_expired_order_is_announced_as_failed():
    assert events_for({"status": "EXPIRED"}) == ["order_failed"]


def test_a_rollback_reversal_is_sent_however_late_and_other_orders_are_not():
    from app.orders.service import new_order

    accepted = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
    fields = {"exchange": "NFO", "tradingsymbol": "X", "transaction_type": "SELL", "quantity": 65,
              "product": "NRML", "order_type": "MARKET"}
    reversal, leg = new_order("a", fields, role="rollback"), new_order("a", fields, role="leg")
    assert reversal.expires_at is None and leg.expires_at is not None
    late = accepted + timedelta(minutes=30)
    assert not admission.too_late_to_send(order(role="rollback", accepted_at=accepted), late)
    assert admission.too_late_to_send(order(role="leg", accepted_at=accepted), late)
