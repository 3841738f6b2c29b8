"""Rotating CREDENTIALS_KEY: secrets stored under key A are read under "B,A", `flask credentials
rotate` re-encrypts them under B, and once A is dropped they are still read. Every stored secret:
an account's api secret, access token and egress proxy URL, and a webhook's secret. In a database
of the test's own, since the rotation rewrites every row."""
from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from app import accounts as account_service
from app.broker.egress import Egress
from app.core.crypto import decrypt
from app.core.db import new_session, session_scope
from app.models import Account, Webhook
from app.webhooks.registry import create_webhook
from tests.support.private_database import private_database

A, B = Fernet.generate_key().decode(), Fernet.generate_key().decode()
SECRETS = {"api_secret": "api-secret-rotation", "access_token": "token-rotation",
           "proxy": "http://proxyuser:proxy-password-rotation@127.0.0.1:3128", "webhook": "webhook-secret-rotation"}


@pytest.fixture()
def stored_under_a(db_schema, settings_override):
    """One account and one webhook whose secrets are stored under key A alone."""
    with private_database():
        settings_override(credentials_keys=(A,))
        with session_scope() as session:
            account_service.add_account(session, "rotating", "rotation-api-key", SECRETS["api_secret"],
                                        SECRETS["access_token"], Egress.checked(proxy=SECRETS["proxy"]))
            create_webhook(session, "rotating", "http://127.0.0.1:9/hook", ["order_placed"], SECRETS["webhook"],
                           allow_private=True)
        yield


def read_back() -> dict:
    with new_session() as session:
        account = session.get(Account, "rotating")
        credentials = account_service.credentials(account)
        webhook = session.scalars(select(Webhook).where(Webhook.account_id == "rotating")).one()
        return {"api_secret": credentials.api_secret, "access_token": credentials.access_token,
                "proxy": account_service.egress_of(account).proxy, "webhook": decrypt(webhook.secret_enc)}


def rotate(app):
    return app.test_cli_runner().invoke(args=["credentials", "rotate"])


def test_secrets_under_a_are_read_after_rotating_to_b_with_a_removed(stored_under_a, settings_override, app):
    settings_override(credentials_keys=(B, A))  # B first: new secrets under B, A still reads the old
    assert read_back() == SECRETS

    result = rotate(app)
    assert result.exit_code == 0, result.output
    assert "4 stored secrets re-encrypted under the first key of CREDENTIALS_KEY; 0 already under it" in result.output
    assert not any(secret in result.output for secret in SECRETS.values())

    settings_override(credentials_keys=(B,))  # A removed
    assert read_back() == SECRETS
    again = rotate(app)  # nothing left to move
    assert again.exit_code == 0 and "0 stored secrets re-encrypted" in again.output and "4 already" in again.output


def test_a_secret_under_no_listed_key_stops_the_rotation_and_changes_nothing(stored_under_a, settings_override, app):
    settings_override(credentials_keys=(B,))  # A dropped before rotating
    with new_session() as session:
        before = [tuple(row) for row in session.execute(
            select(Account.api_secret_enc, Account.access_token_enc, Account.egress_proxy_enc))]

    result = rotate(app)
    assert result.exit_code == 1
    assert "accounts.api_secret_enc of id 'rotating' is under no key of CREDENTIALS_KEY" in result.output
    assert not any(secret in result.output for secret in SECRETS.values())
    with new_session() as session:
        assert [tuple(row) for row in session.execute(
            select(Account.api_secret_enc, Account.access_token_enc, Account.egress_proxy_enc))] == before
    settings_override(credentials_keys=(B, A))
    assert read_back() == SECRETS
