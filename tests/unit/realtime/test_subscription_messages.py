"""Tick subscription messages: malformed ones are an answer, never the end of the socket's reader."""
from __future__ import annotations

import json

import pytest

from app.realtime.clients import SubscriptionError, parse_subscription_message


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "{" * 50_000, "nope", "[]"])
def test_malformed_messages_are_subscription_errors(text):
    with pytest.raises(SubscriptionError):
        parse_subscription_message(text)


def test_an_error_quotes_a_bad_value_briefly():
    with pytest.raises(SubscriptionError) as error:
        parse_subscription_message(json.dumps({"tokens": ["x" * 100_000]}))
    assert len(str(error.value)) < 100
