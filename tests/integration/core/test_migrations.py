"""`alembic upgrade head` on an empty database creates the schema the models describe."""
import secrets

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from app.cli import alembic_config
from app.models import Base


def _assert_no_drift(url: str) -> None:
    command.upgrade(alembic_config(url), "head")
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"
    assert set(Base.metadata.tables) <= tables


def test_upgrade_empty_postgresql_matches_models(test_env):
    if test_env.backend != "postgresql":
        pytest.fail("PostgreSQL is required for this test (.ci/run starts it)")
    server = make_url(test_env.database_url)
    name = f"ticker_mig_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        _assert_no_drift(server.set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def test_upgrade_empty_sqlite_matches_models(tmp_path):
    _assert_no_drift(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_0002_adds_the_order_columns_to_an_existing_database_and_back(tmp_path):
    """A deployment on 0001 with orders upgrades in place: the orders stay, the new columns are empty."""
    url = f"sqlite:///{tmp_path / 'existing.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO accounts (id, api_key, api_secret_enc, active, created_at, updated_at) "
                          "VALUES ('a', 'k', 's', 1, '2026-01-01', '2026-01-01')"))
        conn.execute(text(
            "INSERT INTO orders (id, account_id, status, tag, status_message, attempts, exchange, tradingsymbol, "
            "transaction_type, quantity, product, order_type, variety, validity, filled_quantity, role, "
            "created_at, updated_at) VALUES ('o1', 'a', 'REJECTED', 't1', 'Insufficient funds.', 1, 'NFO', "
            "'NIFTY26DEC24000CE', 'SELL', 65, 'NRML', 'MARKET', 'regular', 'DAY', 0, 'order', "
            "'2026-01-01', '2026-01-01')"))

    def order_columns():
        with engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("orders")}

    try:
        command.upgrade(config, "0002")
        assert {"status_message_raw", "validity_ttl"} <= order_columns()
        with engine.connect() as conn:
            row = conn.execute(text("SELECT status_message, status_message_raw, validity_ttl FROM orders")).one()
        assert tuple(row) == ("Insufficient funds.", None, None)
        command.downgrade(config, "0001")
        assert not {"status_message_raw", "validity_ttl"} & order_columns()
    finally:
        engine.dispose()


def test_0003_adds_the_account_egress_columns_to_an_existing_database_and_back(tmp_path):
    """A deployment on 0002 upgrades in place: its accounts stay, on the default route (no egress)."""
    url = f"sqlite:///{tmp_path / 'existing.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0002")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO accounts (id, api_key, api_secret_enc, active, created_at, updated_at) "
                          "VALUES ('a', 'k', 's', 1, '2026-01-01', '2026-01-01')"))

    def account_columns():
        with engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("accounts")}

    try:
        command.upgrade(config, "0003")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT id, egress_source_address, egress_proxy_enc FROM accounts")).one()
        assert tuple(row) == ("a", None, None)
        command.downgrade(config, "0002")
        assert not {"egress_source_address", "egress_proxy_enc"} & account_columns()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM accounts")).scalars().all() == ["a"]
    finally:
        engine.dispose()
