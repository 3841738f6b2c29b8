"""Migration 0006 on a deployment with webhooks: they stay, and are signed only from now on."""
from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, text

from app.cli import alembic_config


def test_0006_adds_legacy_secret_header_false_to_existing_webhooks_and_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'existing.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0005")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO accounts (id, api_key, api_secret_enc, active, created_at, updated_at) "
                          "VALUES ('a', 'k', 's', 1, '2026-01-01', '2026-01-01')"))
        conn.execute(text("INSERT INTO webhooks (id, account_id, url, events, secret_enc, active, created_at) "
                          "VALUES ('w1', 'a', 'https://hooks.example.com/t', '[\"order_completed\"]', 'x', 1, "
                          "'2026-01-01')"))

    def webhook_columns():
        with engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("webhooks")}

    try:
        command.upgrade(config, "0006")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT id, legacy_secret_header FROM webhooks")).one()
        assert (row.id, bool(row.legacy_secret_header)) == ("w1", False)
        command.downgrade(config, "0005")
        assert "legacy_secret_header" not in webhook_columns()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM webhooks")).scalars().all() == ["w1"]
    finally:
        engine.dispose()
