"""One place where a broker call's TokenException becomes the account's expired session."""
from __future__ import annotations

from kiteconnect import exceptions as kite_errors

from app.broker.errors import describe
from app.kite_session.state import mark_expired


def noticed(account_id: str, exc: BaseException, source: str, kite=None) -> bool:
    """True when `exc` is Kite refusing the account's token; its session is then marked expired
    (`kite`: the client that made the call, so a token a newer login replaced changes nothing)."""
    if not isinstance(exc, kite_errors.TokenException):
        return False
    from app.broker.client import forget_client  # the client module imports the accounts, which import us

    forget_client(account_id)  # the next call reads the stored token again
    mark_expired(account_id, describe(exc), source, access_token=getattr(kite, "access_token", None))
    return True
