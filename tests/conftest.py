"""The test ladder, and the fixtures of the real stack that integration and end-to-end tests share.

Rungs, by folder (each test gets its folder's marker, so `pytest -m unit` and `pytest tests/unit`
select the same tests; `pytest` runs them all):

- `tests/unit`: no services — no database, no Redis, no broker, no worker, no subprocess server.
- `tests/integration`: the real parts — PostgreSQL, Redis, Celery workers, the paper broker.
- `tests/e2e`: the whole stack from outside — the dashboard in headless Chromium, chaos.

The integration environment (a private database and Redis DB, the service's variables) is set
up once per session, just before the first integration or end-to-end module is imported, and
only when the run may select such tests (tests/support/environment.py).

A whole run goes unit first (seconds, and a broken unit fails fast), then end-to-end, then
integration: the end-to-end tests meet the shared stack as a fresh deployment, before the
integration tests fill its database with hundreds of orders, accounts and subscriptions.
"""
from __future__ import annotations

import pytest

from tests.support.environment import (API_KEYS, BROKER_ACCOUNTS, close_test_environment,
                                       ensure_test_environment, use_paper_broker)

RUNGS = ("unit", "integration", "e2e")
RUN_ORDER = ("unit", "e2e", "integration")
NEEDS_ENVIRONMENT = ("integration", "e2e")
SESSION_CASH = 1e9   # ₹100 crore on each paper-broker account of the service's tests


def rung_of(path) -> str | None:
    """The rung of a test file or folder under tests/ (None: not in a rung folder)."""
    from pathlib import Path

    tests_dir = Path(__file__).resolve().parent
    try:
        parts = Path(path).resolve().relative_to(tests_dir).parts
    except ValueError:
        return None
    return parts[0] if parts and parts[0] in RUNGS else None


def _may_select(config, rung: str) -> bool:
    """False when `-m` rules out every test of `rung` whatever its other markers are."""
    markexpr = config.getoption("markexpr", default="")
    if not markexpr:
        return True
    from _pytest.mark.expression import Expression

    expression = Expression.compile(markexpr)
    return any(expression.evaluate(lambda name, /, **_kw: name == rung if name in RUNGS else others)
               for others in (False, True))


def pytest_collectstart(collector):
    """Before an integration or end-to-end folder or module is imported: the environment."""
    rung = rung_of(collector.path) if getattr(collector, "path", None) else None
    if rung in NEEDS_ENVIRONMENT and _may_select(collector.config, rung):
        try:
            ensure_test_environment()
        except Exception as exc:  # as a conftest that fails to import: the run stops, saying why
            pytest.exit(f"the {rung} tests' environment could not be set up: {type(exc).__name__}: {exc}",
                        returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    misplaced, unit_with_services = [], []
    for item in items:
        rung = rung_of(item.path)
        if rung is None:
            misplaced.append(item.nodeid)
            continue
        item.add_marker(getattr(pytest.mark, rung))
        if rung == "unit" and "test_env" in getattr(item, "fixturenames", ()):  # every stack fixture needs it
            unit_with_services.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(f"tests outside tests/unit, tests/integration and tests/e2e: {misplaced[:5]}")
    if unit_with_services:
        raise pytest.UsageError(f"unit tests run without services, these use the real stack (move them to "
                                f"tests/integration): {unit_with_services[:5]}")
    items.sort(key=lambda item: RUN_ORDER.index(rung_of(item.path)))  # stable: folder order within a rung


def pytest_sessionfinish(session, exitstatus):
    close_test_environment()


@pytest.fixture()
def settings_override():
    """`settings_override(name=value, ...)` changes this process's settings for one test."""
    from app.core import config

    before = config.get_settings()
    yield lambda **changes: config.configure(config.get_settings(), **changes)
    config.configure(before)


# --- the real stack (integration and end-to-end tests) -------------------------------------

@pytest.fixture(scope="session")
def test_env():
    """The session's private database and Redis DB (set up at collection; here at the latest)."""
    return ensure_test_environment()


@pytest.fixture(scope="session")
def db_schema(test_env):
    """The migrated schema (alembic upgrade head on the empty test database)."""
    from alembic import command

    from app.cli import alembic_config

    command.upgrade(alembic_config(), "head")
    return test_env.database_url


@pytest.fixture(scope="session")
def app(db_schema):
    from app import create_app

    application = create_app()
    application.config["TESTING"] = True
    return application


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def headers():
    """Request headers per role: admin, primary (only account `primary`), other."""
    return {role: {"X-API-Key": key} for role, key in API_KEYS.items()}


@pytest.fixture(scope="session")
def live_server(app):
    from tests.support.processes import LiveServer

    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def paper_broker(live_server):
    """The paper broker in a subprocess, posting order postbacks to the live server."""
    from tests.support.processes import PaperBroker

    secrets = {c["api_key"]: (c["api_secret"], c["access_token"]) for c in BROKER_ACCOUNTS.values()}
    # Funds deep enough for a whole session of orders on one account, and tokens that outlive 06:00 IST
    # (a run may span it): these tests are about the service's order flow; the broker's margin and
    # session rules have their own tests (tests/integration/sim/test_margins.py, test_sessions.py).
    with PaperBroker(seed=7, postback_url=f"{live_server.url}/postback/kite", accounts=secrets,
                     cash=SESSION_CASH, daily_expiry=False) as broker:
        yield broker


@pytest.fixture(scope="session")
def broker_env(paper_broker):
    """Point the service (this process's settings, and the workers it starts) at the paper broker."""
    use_paper_broker(paper_broker)
    return paper_broker


@pytest.fixture(scope="session")
def accounts(db_schema, broker_env):
    """Accounts `primary` and `other` registered with paper-broker credentials."""
    from app import accounts as account_service
    from app.core.db import session_scope

    with session_scope() as session:
        for account_id, creds in BROKER_ACCOUNTS.items():
            if session.get(account_service.Account, account_id) is None:
                account_service.add_account(session, account_id, **creds)
    return BROKER_ACCOUNTS


@pytest.fixture(scope="session")
def instruments(accounts):
    """The paper broker's instrument dump loaded into the registry."""
    from app.market.instruments import registry
    from workers.tasks.maintenance import refresh_instruments

    count = refresh_instruments.run()
    registry().invalidate()
    assert count > 100
    return registry()


@pytest.fixture(scope="session")
def celery_worker(broker_env, accounts):
    from tests.support.processes import CeleryWorker

    worker = CeleryWorker().start()
    yield worker
    worker.stop()
