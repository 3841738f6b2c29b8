"""Accounts: CLI and REST registration, encrypted secrets, the Kite login through the official client."""
from sqlalchemy import select

from app.core.db import session_scope
from app.models import Account


def test_cli_add_and_list_never_print_secrets(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["accounts", "add", "cli-acct", "--api-key", "ck", "--api-secret", "topsecret",
                                 "--access-token", "tok-123"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(args=["accounts", "add", "cli-acct", "--api-key", "ck", "--api-secret", "x"])
    assert again.exit_code != 0 and "already exists" in again.output
    listing = runner.invoke(args=["accounts", "list"])
    assert "cli-acct" in listing.output and "token set" in listing.output
    assert "topsecret" not in listing.output and "tok-123" not in listing.output


def test_secrets_are_stored_encrypted(client, headers):
    response = client.post("/accounts", headers=headers["admin"], json={
        "account_id": "enc-acct", "api_key": "ek", "api_secret": "plain-secret", "access_token": "plain-token"})
    assert response.status_code == 201
    assert "api_secret" not in response.json and "access_token" not in response.json
    assert response.json["has_access_token"] is True
    with session_scope() as session:
        account = session.scalars(select(Account).where(Account.id == "enc-acct")).one()
        assert "plain-secret" not in account.api_secret_enc
        assert "plain-token" not in account.access_token_enc
        from app.accounts import credentials

        assert credentials(account).api_secret == "plain-secret"


def test_session_exchange_with_the_paper_broker(client, headers, accounts, paper_broker):
    response = client.post("/accounts/primary/session", headers=headers["admin"],
                           json={"request_token": "req-token-1"})
    assert response.status_code == 200, response.json
    assert response.json["account_id"] == "primary"
    with session_scope() as session:
        from app.accounts import credentials

        token = credentials(session.get(Account, "primary")).access_token
    assert token and token != accounts["primary"]["access_token"]
    # The new token works with the official client against the broker.
    from kiteconnect import KiteConnect

    kite = KiteConnect(accounts["primary"]["api_key"], access_token=token, root=paper_broker.root)
    assert kite.profile()["user_id"]


def test_session_exchange_rejected_by_broker_is_422(client, headers, accounts):
    with session_scope() as session:
        from app import accounts as account_service

        if session.get(Account, "wrong-secret") is None:
            account_service.add_account(session, "wrong-secret", accounts["primary"]["api_key"], "not-the-secret")
    response = client.post("/accounts/wrong-secret/session", headers=headers["admin"],
                           json={"request_token": "req-token-2"})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "broker_rejected"
