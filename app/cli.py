"""`flask accounts …`, `flask credentials rotate`, `flask db upgrade`, `flask instruments refresh`."""
from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from app import accounts as account_service
from app.broker.egress import Egress, InvalidEgress
from app.core.db import session_scope
from app.market.instrument_refresh import request_refresh

PROJECT_ROOT = Path(__file__).resolve().parent.parent

accounts_cli = AppGroup("accounts", help="Kite accounts (credentials stored encrypted).")
db_cli = AppGroup("db", help="Schema migrations (Alembic).")
instruments_cli = AppGroup("instruments", help="The instrument registry.")
credentials_cli = AppGroup("credentials", help="CREDENTIALS_KEY, the keys of the stored secrets.")


def _egress_option(ctx, param, value):
    """--egress-source / --egress-proxy, checked as the API checks them."""
    if value is None:
        return None
    try:
        if param.name == "egress_source":
            return Egress.checked(source_address=value)
        return Egress.checked(proxy=value)
    except InvalidEgress as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@accounts_cli.command("add")
@click.argument("account_id")
@click.option("--api-key", required=True)
@click.option("--api-secret", required=True)
@click.option("--access-token", default=None)
@click.option("--egress-source", metavar="IP", callback=_egress_option,
              help="Send this account's order requests from IP, a local address (its static IP).")
@click.option("--egress-proxy", metavar="URL", callback=_egress_option,
              help="Send this account's order requests through the HTTP(S) proxy URL (its static IP).")
@click.option("--if-missing", is_flag=True, help="Succeed quietly when the account exists.")
def add_account(account_id, api_key, api_secret, access_token, egress_source, egress_proxy, if_missing):
    """Register ACCOUNT_ID with its Kite credentials."""
    if egress_source and egress_proxy:
        raise click.UsageError("--egress-source and --egress-proxy are mutually exclusive")
    egress = egress_source or egress_proxy
    try:
        with session_scope() as session:
            account_service.add_account(session, account_id, api_key, api_secret, access_token, egress)
    except account_service.AccountExists:
        if if_missing:
            click.echo(f"account {account_id} already registered")
            return
        raise click.ClickException(f"account {account_id} already exists")
    click.echo(f"account {account_id} added" + (f"; its order requests go {egress.describe()}" if egress else ""))
    request_refresh()


@accounts_cli.command("list")
def list_accounts():
    """List accounts (never their secrets)."""
    with session_scope() as session:
        for account in account_service.list_accounts(session):
            view = account_service.public_view(account)
            token = "token set" if view["has_access_token"] else "no token"
            session_state = view["session"]
            until = f" until {session_state['expires_at']}" if session_state["expires_at"] else ""
            token += {"active": f", session active{until}",
                      "expired": f", session expired at {session_state['expired_at']}: log in at "
                                 f"{session_state['login_url']}"}.get(session_state["state"], "")
            egress = account_service.egress_of(account)
            route = f"\torders go {egress.describe()}" if egress else ""
            click.echo(f"{view['account_id']}\tapi_key={view['api_key']}\t{token}{route}")


@credentials_cli.command("rotate")
def rotate_credentials():
    """Re-encrypt every stored secret under CREDENTIALS_KEY's first key (then older keys may go)."""
    from app.stored_secrets import UnreadableSecret, rotate_stored_secrets

    try:
        with session_scope() as session:
            rotation = rotate_stored_secrets(session)
    except UnreadableSecret as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{rotation.reencrypted} stored secrets re-encrypted under the first key of CREDENTIALS_KEY; "
               f"{rotation.unchanged} already under it")


def alembic_config(database_url: str | None = None):
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if database_url:
        config.attributes["database_url"] = database_url
    return config


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def upgrade(revision):
    """Migrate the database (DATABASE_URL) to REVISION (default head)."""
    from alembic import command

    command.upgrade(alembic_config(), revision)


@instruments_cli.command("freeze-quantities")
def show_freeze_quantities():
    """The freeze quantities in force: the shipped data file's, with FREEZE_QUANTITIES on top."""
    from app.core.config import get_settings
    from app.market.freeze_quantities import DATA_FILE, freeze_quantities

    overridden = get_settings().freeze_quantities
    for name, quantity in sorted(freeze_quantities().items()):
        source = "FREEZE_QUANTITIES" if name in overridden else DATA_FILE.name
        click.echo(f"{name}\t{quantity}\t{source}")


@instruments_cli.command("refresh")
def refresh_instruments():
    """Load the broker's instrument dump now, in this process."""
    from app.market.instrument_refresh import refresh_from_broker

    click.echo(f"{refresh_from_broker()} instruments loaded")
