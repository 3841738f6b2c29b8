"""Fixtures of the market-data tests."""
import pytest


@pytest.fixture()
def clean_subscriptions(instruments):
    """No subscription before the test, none left after it."""
    from app.core.db import session_scope
    from app.models import Subscription

    with session_scope() as session:
        session.query(Subscription).delete()
    yield
    with session_scope() as session:
        session.query(Subscription).delete()
