"""Why the broker rejected an order (app/orders/rejections.py): Kite's texts → one of a few reasons."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.orders import rejections
from app.orders.rejections import REJECTION_REASONS, count_rejection, rejection_reason

# Kite's texts (kite-rules-2026 §1.1, §1.5), as the paper broker writes them.
RMS_MESSAGE = ("Insufficient funds. Required margin is 95417.84 but available margin is 74251.80. "
               "Check the orderbook for open orders.")
RMS_RAW = ("RMS:Margin Exceeds,Required:95417.84, Available:74251.80 for entity account-XX0001 "
           "across exchange across segment across product ")
# What app.broker.errors.describe makes of a refused place call.
MARGIN_AT_PLACEMENT = ("MarginException (400): Insufficient funds. Required margin is 228365.92 but available "
                       "margin is 228358.50.")
FREEZE = ("InputException (400): The order quantity 1820 (28 lots) is higher than the maximum quantity of 1755 "
          "(27 lots) allowed by the exchanges. Please reduce the order quantity or use iceberg orders.")
CLOSED = "InputException (400): Markets are closed right now. Use GTT for placing long standing orders instead."


@pytest.mark.parametrize("texts, reason", [
    ((RMS_RAW, RMS_MESSAGE, None), "margin"),
    ((None, None, MARGIN_AT_PLACEMENT), "margin"),
    ((None, None, FREEZE), "freeze"),
    (("RMS:Rule: Check freeze quantity for FO including square off order", None, None), "freeze"),
    ((None, None, CLOSED), "market_closed"),
    (("Indices are not tradable.", "Indices are not tradable.", None), "other"),
    ((None, None, "TokenException (403): Incorrect `api_key` or `access_token`."), "other"),
    ((None, None, None), "other"),
])
def test_the_reason_is_read_from_kites_texts(texts, reason):
    assert rejection_reason(*texts) == reason


def test_the_raw_text_decides_before_the_others():
    assert rejection_reason(RMS_RAW, "Markets are closed right now.") == "margin"
    assert rejection_reason("", "Markets are closed right now.") == "market_closed"


def test_any_text_gives_one_of_the_known_reasons():
    """The metric's label takes only these values, whatever the broker writes."""
    for text in (RMS_RAW, FREEZE, CLOSED, "RMS:Blocked for entity account-XX0001", "", "\x00" * 3):
        assert rejection_reason(text) in REJECTION_REASONS


def test_a_rejected_order_is_counted_under_its_reason(monkeypatch):
    counted = []
    monkeypatch.setattr(rejections.REJECTIONS, "inc", lambda amount=1.0, **labels: counted.append(labels))
    order = SimpleNamespace(status_message_raw=RMS_RAW, status_message=RMS_MESSAGE, error=RMS_MESSAGE)
    assert count_rejection(order) == "margin"
    assert counted == [{"reason": "margin"}]
