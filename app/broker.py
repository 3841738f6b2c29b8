"""The official kiteconnect client, pointed at KITE_API_ROOT (real Kite or the paper broker)."""
from __future__ import annotations

from kiteconnect import KiteConnect

from app.accounts import Credentials
from app.config import load_settings


def kite_client(creds: Credentials, timeout: float | None = None) -> KiteConnect:
    settings = load_settings()
    kite = KiteConnect(api_key=creds.api_key, access_token=creds.access_token,
                       root=settings.kite_api_root, timeout=timeout or settings.broker_timeout_s)
    return kite


def exchange_request_token(creds: Credentials, request_token: str) -> dict:
    """Kite login: trade a request_token for an access token (checksum computed by the client)."""
    return kite_client(creds).generate_session(request_token, api_secret=creds.api_secret)
