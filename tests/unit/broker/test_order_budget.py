"""The daily order budget without services: the IST day and its reset (Retry-After), which key an
account's orders count under, and what a refusal says (the Redis counter and the intake against
the real stack: tests/integration/orders/test_order_budget.py)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from app.broker.order_budget import IST, OrderBudget, Spend, budget_day
from app.broker.order_limit_keys import describe_limit_key, order_limit_key
from app.orders.budget import BudgetStatus, OrderBudgetExhausted, refusal_at_send
from app.orders.rejections import rejection_reason

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the day window -------------------------------------------------------------------------

def test_the_budget_day_is_the_ist_calendar_day_and_resets_at_ist_midnight():
    morning = at("2026-03-05T03:45:00")  # 09:15 IST, the market opens
    window = budget_day(morning)
    assert window.day == date(2026, 3, 5)
    assert window.resets_at == at("2026-03-05T18:30:00")  # midnight IST is 18:30 UTC
    assert window.resets_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert window.retry_after_s(morning) == 14 * 3600 + 45 * 60


def test_after_ist_midnight_it_is_the_next_day_though_utc_is_still_on_the_previous_one():
    window = budget_day(at("2026-03-05T20:00:00"))  # 01:30 IST on the 6th
    assert window.day == date(2026, 3, 6)
    assert window.resets_at == at("2026-03-06T18:30:00")


def test_the_day_turns_exactly_at_ist_midnight():
    last_moment = at("2026-03-05T18:29:59.500000")
    assert budget_day(last_moment).day == date(2026, 3, 5)
    assert budget_day(last_moment).retry_after_s(last_moment) == 1  # half a second, rounded up
    midnight = at("2026-03-05T18:30:00")
    assert budget_day(midnight).day == date(2026, 3, 6)
    assert budget_day(midnight).retry_after_s(midnight) == 86400


def test_the_day_is_the_same_whatever_zone_the_moment_is_written_in():
    moment = at("2026-03-05T10:00:00")
    assert budget_day(moment) == budget_day(moment.astimezone(IST)) \
        == budget_day(moment.astimezone(timezone(timedelta(hours=-5))))


def test_a_moment_without_a_zone_is_refused():
    with pytest.raises(ValueError):
        budget_day(datetime(2026, 3, 5, 10, 0))


# --- keying -----------------------------------------------------------------------------------

def test_accounts_of_one_zerodha_user_share_one_budget():
    desk_a, desk_b = order_limit_key("desk-a", "ZX1234"), order_limit_key("desk-b", "ZX1234")
    assert desk_a == desk_b == "zerodha:ZX1234"
    day = date(2026, 3, 5)
    assert OrderBudget._counter(desk_a, day) == OrderBudget._counter(desk_b, day)  # one Redis counter
    assert OrderBudget._counter(desk_a, day) != OrderBudget._counter(desk_a, day + timedelta(days=1))
    assert order_limit_key("desk-c", "QW9876") != desk_a
    assert describe_limit_key(desk_a) == "Zerodha account ZX1234"


def test_an_account_whose_user_is_not_known_yet_counts_on_its_own():
    assert order_limit_key("desk-a", None) == "desk-a"
    assert order_limit_key("desk-a", "") == "desk-a"
    assert order_limit_key("desk-a", None) != order_limit_key("desk-b", None)
    # An account id cannot contain ':' (the accounts API's pattern): never a Zerodha user's key.
    assert order_limit_key("ZX1234", None) != order_limit_key("desk-a", "ZX1234")
    assert describe_limit_key("desk-a") == "account desk-a"


# --- what is left, and what a refusal says --------------------------------------------------------

def test_remaining_counts_queued_orders_as_spent_and_never_goes_negative():
    resets = at("2026-03-05T18:30:00")
    assert BudgetStatus("zerodha:ZX1234", used=4990, queued=6, limit=5000, resets_at=resets).remaining == 4
    assert BudgetStatus("zerodha:ZX1234", used=4999, queued=6, limit=5000, resets_at=resets).remaining == 0


def test_an_intake_refusal_names_the_budget_and_what_it_lacks():
    status = BudgetStatus("zerodha:ZX1234", used=4998, queued=1, limit=5000, resets_at=at("2026-03-05T18:30:00"))
    refusal = OrderBudgetExhausted(status, needed=4, retry_after_s=600)
    text = str(refusal)
    assert text.startswith("daily order budget exhausted: Zerodha account ZX1234 may send 5000 orders a day")
    assert "4998 sent today and 1 waiting to be sent leave room for 1, and this request needs 4" in text
    assert "resets at midnight IST (2026-03-05T18:30:00.000Z)" in text
    assert refusal.details == {"used": 4998, "queued": 1, "remaining": 1, "limit": 5000,
                               "resets_at": "2026-03-05T18:30:00.000Z", "needed": 4}
    assert refusal.retry_after_s == 600


def test_a_queued_order_refused_at_send_time_says_why_and_when_the_budget_returns():
    text = refusal_at_send("desk-a", Spend(False, 5000, 5000, budget_day(at("2026-03-05T09:00:00")).resets_at))
    assert text.startswith("order budget exhausted: not sent, account desk-a has sent 5000 of its 5000 orders a day")
    assert "resets at midnight IST (2026-03-05T18:30:00.000Z)" in text
    assert rejection_reason(None, None, text) == "other"  # order_rejections_total{reason="other"}
