"""What a failed broker call means (app/broker/errors.py): worth retrying, a final rejection, or
neither; and how it is described in an order's error."""
from __future__ import annotations

import pytest
import requests
from kiteconnect import exceptions as kite

from app.broker.errors import Transient, describe, is_final_rejection, is_transient


def test_failures_are_classified():
    from kiteconnect import exceptions as kite
    import requests

    assert is_transient(requests.ReadTimeout()) and is_transient(requests.ConnectionError())
    assert is_transient(kite.NetworkException("Too many requests", code=429))
    assert is_transient(kite.GeneralException("oops", code=503))
    assert not is_transient(kite.GeneralException("not found", code=404))
    assert is_final_rejection(kite.InputException("bad")) and is_final_rejection(kite.OrderException("no"))
    assert not is_final_rejection(kite.NetworkException("down"))


@pytest.mark.parametrize("exc", [
    requests.ConnectTimeout(), requests.HTTPError("502"), ConnectionError("reset"), TimeoutError(),
    Transient("the broker's answer was lost"), kite.NetworkException("down"), kite.DataException("bad OMS response"),
    kite.GeneralException("oops"), kite.GeneralException("slow down", code=429), kite.GeneralException("x", code=502),
])
def test_transient_failures_may_or_may_not_have_reached_the_broker(exc):
    assert is_transient(exc)
    assert not is_final_rejection(exc)


@pytest.mark.parametrize("exc", [
    kite.InputException("invalid tradingsymbol"), kite.OrderException("insufficient margin"),
    kite.TokenException("session expired"), kite.PermissionException("not allowed"),
    kite.GeneralException("not found", code=404), kite.KiteException("refused", code=400),
])
def test_the_brokers_refusals_are_final(exc):
    assert not is_transient(exc)
    assert is_final_rejection(exc)


def test_a_bug_is_neither_retried_nor_a_rejection():
    for exc in (ValueError("bad"), KeyError("order_id"), RuntimeError("boom")):
        assert not is_transient(exc) and not is_final_rejection(exc)


def test_describe_names_the_exception_its_code_and_text():
    assert describe(kite.InputException("invalid quantity")) == "InputException (400): invalid quantity"
    assert describe(ValueError("bad")) == "ValueError: bad"
    assert describe(TimeoutError()) == "TimeoutError: TimeoutError"  # no text: the name again
    assert len(describe(kite.OrderException("x" * 1000))) == 500
