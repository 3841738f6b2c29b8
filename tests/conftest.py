"""Shared fixtures: real PostgreSQL, Redis, Celery worker, paper broker and live server."""
from __future__ import annotations

from tests.support.environment import API_KEYS, configure_test_environment

TEST_ENV = configure_test_environment()  # before any app import: celeryconfig reads the env

import pytest  # noqa: E402

from tests.support.processes import CeleryWorker, LiveServer  # noqa: E402

# The paper-broker accounts every integration test trades on.
BROKER_ACCOUNTS = {
    "primary": {"api_key": "paper-primary", "api_secret": "paper-secret-primary", "access_token": "tok-primary"},
    "other": {"api_key": "paper-other", "api_secret": "paper-secret-other", "access_token": "tok-other"},
}


def pytest_sessionfinish(session, exitstatus):
    TEST_ENV.close()


@pytest.fixture(scope="session")
def test_env():
    return TEST_ENV


@pytest.fixture()
def settings_override():
    """`settings_override(name=value, ...)` changes this process's settings for one test."""
    from app.core import config

    before = config.get_settings()
    yield lambda **changes: config.configure(config.get_settings(), **changes)
    config.configure(before)


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
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def paper_broker(live_server):
    """The paper broker in a subprocess, posting order postbacks to the live server."""
    from sim.harness import PaperBroker

    secrets = {c["api_key"]: (c["api_secret"], c["access_token"]) for c in BROKER_ACCOUNTS.values()}
    with PaperBroker(seed=7, postback_url=f"{live_server.url}/postback/kite", accounts=secrets) as broker:
        yield broker


@pytest.fixture(scope="session")
def broker_env(paper_broker):
    """Point the service (this process's settings, and the workers it starts) at the paper broker."""
    import os

    from app.core import config

    os.environ["KITE_API_ROOT"] = paper_broker.root  # inherited by worker and stream processes
    os.environ["KITE_WS_ROOT"] = paper_broker.ws_root
    config.configure(config.get_settings(), kite_api_root=paper_broker.root, kite_ws_root=paper_broker.ws_root)
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
    worker = CeleryWorker().start()
    yield worker
    worker.stop()
