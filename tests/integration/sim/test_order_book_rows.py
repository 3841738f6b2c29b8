"""app.broker.client.order_book_rows: the rows asked for, exactly as kite.orders() has them, and its errors."""
from __future__ import annotations

import pytest
from kiteconnect import exceptions as kex

from app.broker.client import order_book_rows
from tests.support.paper_broker import option, place


def test_only_the_rows_asked_for_as_kite_orders_has_them(broker, kite):
    inst = option(kite)
    ids = [place(kite, inst, tag=f"book{n}") for n in range(4)]
    whole = {row["order_id"]: row for row in kite.orders()}

    rows = order_book_rows(kite, tags=["book1", "not-there"], order_ids=[ids[3]])

    assert sorted(row["order_id"] for row in rows) == sorted([ids[1], ids[3]])
    assert all(row == whole[row["order_id"]] for row in rows)  # timestamps parsed to datetime alike
    assert order_book_rows(kite) == []


@pytest.mark.parametrize("status", [503, 429])
def test_errors_are_kiteconnects_own(broker, kite, status):
    broker.set_faults(error_next=2, error_status=status)
    raised = []
    for read in (kite.orders, lambda: order_book_rows(kite, tags=["x"])):
        with pytest.raises(kex.KiteException) as caught:
            read()
        raised.append((type(caught.value), caught.value.code, str(caught.value)))
    assert raised[0] == raised[1]
