"""The sessions as metrics, read from the database at scrape time (every process sees the same):
`kite_session_state{account_id,state}` is 1 for the account's current state and 0 for the others,
`kite_session_expires_in_seconds{account_id}` counts down to an active session's 06:00 IST."""
from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import select

from app.core.db import new_session
from app.kite_session.state import STATES, session_view
from app.models import Account


def session_gauges():
    state = GaugeMetricFamily("kite_session_state", "The account's Kite session: 1 for its current state "
                              "(active, expired, missing), 0 for the others", labels=["account_id", "state"])
    expires = GaugeMetricFamily("kite_session_expires_in_seconds", "Seconds until the account's active Kite "
                                "session ends (the next 06:00 IST)", labels=["account_id"])
    with new_session() as session:
        views = {account.id: session_view(account) for account in session.scalars(
            select(Account).where(Account.active.is_(True)).order_by(Account.id))}
    for account_id, view in views.items():
        for name in STATES:
            state.add_metric([account_id, name], 1.0 if view["state"] == name else 0.0)
        if view["expires_in_s"] is not None:
            expires.add_metric([account_id], view["expires_in_s"])
    yield state
    yield expires
