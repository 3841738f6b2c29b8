"""The backlog check at intake takes the unsent orders the budget check of the same request counted
(app.orders.pre_trade: one reading of the limit key and the QUEUED orders, not three database sessions).
Unit tests reach no database: a check that still read it would fail here."""
from __future__ import annotations

import pytest

from app.orders import admission

BASKET = [{"expire_after_s": None}]


def test_a_full_backlog_is_refused_on_the_count_the_budget_check_read():
    allowed = admission.backlog_max()
    with pytest.raises(admission.OrderBacklogFull) as refused:
        admission.require_backlog_room("primary", 1, BASKET, "order", counted=("primary", allowed))
    assert refused.value.details["unsent"] == allowed
    assert refused.value.details["backlog_max"] == allowed
    assert "account primary has" in str(refused.value)


def test_a_batch_with_room_passes_on_that_count_alone():
    assert admission.require_backlog_room("primary", 4, BASKET * 4, "batch", counted=("zerodha:AB1234", 0)) is None
