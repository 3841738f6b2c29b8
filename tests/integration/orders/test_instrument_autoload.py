"""The instrument registry loads itself: at worker start, after a registration, and once for an
order that names a symbol a stale registry lacks. Nobody runs `flask instruments refresh`."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, update

from app.core.db import session_scope
from app.market.instrument_refresh import IST, MISS_REFRESH_KEY, registry_state
from app.market.instruments import registry
from app.models import Account, Instrument
from app.core.redis_client import get_redis
from tests.support.orders import market_order
from tests.support.waiting import wait_for
from tests.support.processes import CeleryWorker


def stored_count() -> int:
    with session_scope() as session:
        return registry_state(session)[0]


def empty_registry() -> None:
    with session_scope() as session:
        session.execute(delete(Instrument))
    registry().invalidate()
    get_redis().delete(MISS_REFRESH_KEY)


def age_registry(hours: float) -> None:
    """Make the stored dump look loaded `hours` before the latest 08:00 IST dump."""
    from app.market.instrument_refresh import latest_dump_time

    loaded = latest_dump_time(datetime.now(timezone.utc)) - timedelta(hours=hours)
    with session_scope() as session:
        session.execute(update(Instrument).values(updated_at=loaded))
    registry().invalidate()


@pytest.fixture()
def restore_registry(order_stack):
    """Whatever a test does to the registry, the next test finds it loaded and fresh."""
    yield
    get_redis().delete(MISS_REFRESH_KEY)
    from app.market.instrument_refresh import refresh_from_broker

    refresh_from_broker()


def test_a_stack_started_without_a_refresh_loads_the_registry_and_completes_an_order(
        orders, option, restore_registry):
    empty_registry()
    assert stored_count() == 0
    worker = CeleryWorker(queues="maintenance", concurrency=1).start()
    try:
        count = wait_for(stored_count, timeout=30, interval=0.2, what="a starting worker to load the registry")
    finally:
        worker.stop()
    assert count > 100

    response = orders.place(market_order(option))
    assert response.status_code == 202, response.get_json()
    assert orders.wait_status(response.get_json()["order_id"], "COMPLETE")["filled_quantity"] == option.lot_size


def test_registering_an_account_loads_an_empty_registry(client, headers, order_stack, restore_registry):
    empty_registry()
    creds = {"api_key": "paper-primary", "api_secret": "paper-secret-primary", "access_token": "tok-primary"}
    try:
        response = client.post("/accounts", json={"account_id": "autoload", **creds}, headers=headers["admin"])
        assert response.status_code == 201, response.get_json()
        assert wait_for(stored_count, timeout=30, interval=0.2, what="the registration to load the registry") > 100
    finally:
        with session_scope() as session:
            session.execute(delete(Account).where(Account.id == "autoload"))


def test_an_unknown_symbol_refreshes_a_stale_registry_once_before_it_is_refused(
        orders, option, restore_registry):
    get_redis().delete(MISS_REFRESH_KEY)
    age_registry(hours=1)
    with session_scope() as session:  # today's dump has a symbol yesterday's lacked
        session.execute(delete(Instrument).where(Instrument.instrument_token == option.instrument_token))
    registry().invalidate()

    response = orders.place(market_order(option))
    assert response.status_code == 202, response.get_json()
    assert registry().by_token(option.instrument_token) is not None
    orders.wait_status(response.get_json()["order_id"], "COMPLETE")

    # Within the next few minutes another miss on a stale registry does not ask the broker again.
    age_registry(hours=1)
    with session_scope() as session:
        session.execute(delete(Instrument).where(Instrument.instrument_token == option.instrument_token))
    registry().invalidate()
    refused = orders.place(market_order(option))
    assert refused.status_code == 422
    assert "not a known instrument" in refused.get_json()["error"]["details"]["tradingsymbol"][0]


def test_a_fresh_registry_is_not_refreshed_for_a_symbol_that_does_not_exist(orders, option):
    get_redis().delete(MISS_REFRESH_KEY)
    with session_scope() as session:
        before = registry_state(session)
    refused = orders.place(market_order(option, tradingsymbol="NIFTYNOSUCHCE"))
    assert refused.status_code == 422
    with session_scope() as session:
        assert registry_state(session) == before
    assert not get_redis().exists(MISS_REFRESH_KEY)


def test_health_shows_the_registrys_size_and_age(client, order_stack):
    check = client.get("/health").get_json()["checks"]["instruments"]
    assert check["status"] == "ok" and check["count"] > 100
    assert 0 <= check["age_s"] < 24 * 3600 and check["stale"] is False
    assert datetime.fromisoformat(check["loaded_at"].replace("Z", "+00:00")).astimezone(IST)


def test_concurrent_refreshes_take_turns(order_stack):
    """A forced refresh (admin, CLI, beat) racing a worker's start-up load must not collide on the
    table both replace: one waits for the other."""
    import threading

    from app.market.instrument_refresh import refresh_from_broker, refresh_if_stale

    age_registry(hours=1)
    results, errors = [], []

    def run(refresh):
        try:
            results.append(refresh())
        except Exception as exc:  # UniqueViolation on pk_instruments without the shared lock
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in (refresh_from_broker, refresh_if_stale,
                                                                 refresh_from_broker)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results.count(None) <= 1 and all(r is None or r > 100 for r in results)
    assert stored_count() > 100
