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
