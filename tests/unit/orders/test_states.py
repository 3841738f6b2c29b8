"""The order state machine (app/orders/states.py): which moves are allowed, what the broker's
statuses mean for ours, and that a move records its event — without a database."""
from __future__ import annotations

import pytest

from app.broker import statuses as kite
from app.models import Order, OrderEvent
from app.orders import states
from app.orders.states import (ALLOWED, BROKER_FINAL, CANCELLED, COMPLETE, DEAD_LETTER, EXPIRED, FINAL, LIVE, OPEN,
                               PARTIAL, QUEUED, REJECTED, SUBMITTING, InvalidTransition, can_move,
                               from_broker_status, transition)

ALL = (QUEUED, SUBMITTING, OPEN, COMPLETE, CANCELLED, REJECTED, DEAD_LETTER, PARTIAL, EXPIRED)


class RecordingSession:
    """What `transition` needs of a session: somewhere to add the event."""

    def __init__(self) -> None:
        self.added = []

    def add(self, obj) -> None:
        self.added.append(obj)


def order(status: str, **changes) -> Order:
    fields = dict(id="o1", account_id="primary", status=status, attempts=2, tag="tso1", exchange="NFO",
                  tradingsymbol="NIFTY30JAN24000CE", transaction_type="BUY", quantity=75, product="NRML",
                  order_type="MARKET")
    return Order(**{**fields, **changes})


def test_every_status_has_its_moves_and_the_final_ones_none():
    assert set(ALLOWED) == set(ALL)
    assert FINAL == BROKER_FINAL | {DEAD_LETTER, PARTIAL, EXPIRED}  # PARTIAL: sliced parents only
    assert LIVE == set(ALL) - FINAL
    assert ALLOWED[PARTIAL] == frozenset()
    assert BROKER_FINAL == kite.FINAL  # our final statuses are Kite's
    for status in BROKER_FINAL:
        assert ALLOWED[status] == frozenset()
        assert not any(can_move(status, target) for target in ALL)


@pytest.mark.parametrize("current, target", [
    (QUEUED, SUBMITTING), (SUBMITTING, OPEN), (OPEN, COMPLETE), (OPEN, CANCELLED), (OPEN, REJECTED),
    (SUBMITTING, QUEUED),  # a transient failure: the retry is scheduled
    (SUBMITTING, DEAD_LETTER),  # attempts exhausted
    (DEAD_LETTER, QUEUED),  # replay
    (OPEN, OPEN),  # a modification, a partial fill
    (QUEUED, CANCELLED),  # cancelled before it was sent
    (QUEUED, EXPIRED),  # not sent before its expiry
    (SUBMITTING, EXPIRED),  # a retry past its expiry, once the tag lookup found nothing at the broker
])
def test_the_documented_moves_are_allowed(current, target):
    assert can_move(current, target)


@pytest.mark.parametrize("current", [QUEUED, SUBMITTING, DEAD_LETTER, EXPIRED])
def test_the_brokers_word_wins_over_ours(current):
    """An update from the broker may move an order we still think unsent straight to what it says."""
    for target in (OPEN, COMPLETE, CANCELLED, REJECTED):
        assert can_move(current, target), (current, target)


@pytest.mark.parametrize("current, target", [
    (OPEN, QUEUED), (OPEN, SUBMITTING), (OPEN, DEAD_LETTER),  # live at the broker: never resent
    (QUEUED, QUEUED), (SUBMITTING, SUBMITTING), (DEAD_LETTER, DEAD_LETTER), (DEAD_LETTER, SUBMITTING),
    (COMPLETE, OPEN), (CANCELLED, QUEUED), (REJECTED, QUEUED),
    (EXPIRED, QUEUED), (EXPIRED, SUBMITTING), (OPEN, EXPIRED), (DEAD_LETTER, EXPIRED),  # never sent late
])
def test_other_moves_are_refused(current, target):
    assert not can_move(current, target)


def test_unknown_statuses_move_nowhere():
    assert not can_move("LOST", OPEN)
    assert not can_move(QUEUED, "LOST")


@pytest.mark.parametrize("broker_status, ours", [
    ("COMPLETE", COMPLETE), ("CANCELLED", CANCELLED), ("REJECTED", REJECTED), ("complete", COMPLETE),
    ("OPEN", OPEN), ("TRIGGER PENDING", OPEN), ("PUT ORDER REQ RECEIVED", OPEN), ("VALIDATION PENDING", OPEN),
    ("MODIFY PENDING", OPEN), ("UPDATE", OPEN), (None, OPEN), ("", OPEN),
])
def test_a_kite_status_is_ours_when_final_and_otherwise_live(broker_status, ours):
    assert from_broker_status(broker_status) == ours


def test_every_live_kite_status_is_open_for_us():
    for status in kite.LIVE:
        assert from_broker_status(status) == OPEN


def test_a_transition_moves_the_order_and_records_its_event():
    session, placed = RecordingSession(), order(SUBMITTING)
    event = transition(session, placed, OPEN, detail={"source": "postback"})
    assert placed.status == OPEN and placed.updated_at is not None and placed.error is None
    assert session.added == [event] and isinstance(event, OrderEvent)
    assert (event.order_id, event.from_status, event.to_status) == ("o1", SUBMITTING, OPEN)
    assert event.attempt == 2 and event.detail == {"source": "postback"} and event.error is None


def test_a_transition_with_an_error_keeps_it_on_the_order_and_the_event():
    session, failing = RecordingSession(), order(SUBMITTING)
    event = transition(session, failing, DEAD_LETTER, error="NetworkException (503): down")
    assert failing.status == DEAD_LETTER and failing.error == "NetworkException (503): down"
    assert event.error == "NetworkException (503): down" and event.to_status == DEAD_LETTER


def test_a_refused_transition_changes_nothing():
    session, done = RecordingSession(), order(COMPLETE, error=None)
    with pytest.raises(InvalidTransition, match="COMPLETE → QUEUED"):
        transition(session, done, QUEUED)
    assert done.status == COMPLETE and done.updated_at is None and session.added == []


def test_record_event_counts_attempts_from_zero():
    session, fresh = RecordingSession(), order(QUEUED, attempts=None)
    event = states.record_event(session, fresh, None, QUEUED)
    assert event.attempt == 0 and event.from_status is None and session.added == [event]
