"""Kite's order statuses in one place (app/broker/statuses.py): final, live and verdict."""
from __future__ import annotations

from app.broker import statuses as kite

INTERMEDIATE = {"PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING", "MODIFY PENDING",
                "MODIFY VALIDATION PENDING", "CANCEL PENDING", "AMO REQ RECEIVED"}


def test_final_statuses():
    assert kite.FINAL == {"COMPLETE", "CANCELLED", "REJECTED"}


def test_live_orders_may_still_fill_and_none_is_final():
    assert {kite.OPEN, kite.TRIGGER_PENDING} | INTERMEDIATE == kite.LIVE
    assert not kite.LIVE & kite.FINAL


def test_a_verdict_is_past_the_risk_checks():
    """Live on the exchange or final: the broker has said whether the order stands."""
    assert kite.VERDICT == {kite.OPEN, kite.TRIGGER_PENDING} | kite.FINAL
    assert not INTERMEDIATE & kite.VERDICT  # acknowledged, not yet judged


def test_a_modification_postback_is_neither_live_nor_final():
    assert "UPDATE" not in kite.LIVE | kite.FINAL | kite.VERDICT
