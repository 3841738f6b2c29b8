"""Accounts keyed by api key: credentials, app settings, orders, trades and positions.

The api_secret of an account is the one registered for it (`--account KEY:SECRET`,
`POST /_sim/accounts`), else the broker-wide default `--api-secret`. It is used to
verify the session checksum and to sign postbacks. Tokens and their lifetimes are
kept by `sim.sessions`.
"""
from __future__ import annotations

import hashlib
import secrets
import time

from .clock import kite_time
from .errors import KiteError, token_error
from .funds import DEFAULT_CASH
from .orders import Order
from .positions import Position
from .sessions import Sessions


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Account:
    def __init__(self, api_key: str, api_secret: str):
        self.api_key = api_key
        self.api_secret = api_secret
        self.user_id = "PB" + str(int(sha256_hex(api_key)[:8], 16) % 10000).zfill(4)
        self.redirect_url: str | None = None     # where the login page sends the browser
        self.allowed_ips: tuple[str, ...] = ()   # static IPs for order requests; empty: any address
        self.orders: dict[str, Order] = {}
        self.trades: list[dict] = []
        self.positions: dict[tuple, Position] = {}
        self.cash = DEFAULT_CASH   # opening funds; /_sim/accounts or --cash change it

    def position(self, order: Order) -> Position:
        inst = order.instrument
        key = (inst.exchange, inst.tradingsymbol, order.request.product)
        if key not in self.positions:
            self.positions[key] = Position(inst.tradingsymbol, inst.exchange, inst.instrument_token,
                                           order.request.product)
        return self.positions[key]

    def find_orders_by_tag(self, tag: str) -> list[Order]:
        return [o for o in self.orders.values() if o.fields["tag"] == tag]

    def profile(self) -> dict:
        return {
            "user_id": self.user_id, "user_type": "individual", "email": f"{self.user_id.lower()}@paper.broker",
            "user_name": f"Paper Trader {self.user_id}", "user_shortname": "Paper", "broker": "ZERODHA",
            "exchanges": ["NSE", "NFO"], "products": ["CNC", "NRML", "MIS"],
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"], "avatar_url": None,
            "meta": {"demat_consent": "physical"},
        }


class Accounts:
    def __init__(self, default_secret: str, strict: bool = False):
        self.default_secret = default_secret
        self.strict = strict
        self.default_cash = DEFAULT_CASH   # --cash
        self.sessions = Sessions()
        self._by_key: dict[str, Account] = {}

    def __iter__(self):
        return iter(self._by_key.values())

    def get(self, api_key: str) -> Account:
        """The account for an api key, created on first use."""
        if api_key not in self._by_key:
            self._by_key[api_key] = account = Account(api_key, self.default_secret)
            account.cash = self.default_cash
        return self._by_key[api_key]

    def find(self, api_key: str) -> Account | None:
        """The account for an api key if it was registered or used, without creating one."""
        return self._by_key.get(api_key)

    def register(self, api_key: str, api_secret: str | None = None, access_token: str | None = None) -> Account:
        account = self.get(api_key)
        if api_secret:
            account.api_secret = api_secret
        if access_token:
            self.sessions.start(api_key, access_token)
        return account

    def authenticate(self, api_key: str | None, access_token: str | None) -> Account:
        """The token must have a live session; lenient mode (not strict) starts one for a token never seen."""
        if not api_key or not access_token:
            raise token_error()
        self.sessions.check(api_key, access_token, start_unknown=not self.strict)
        return self.get(api_key)

    def create_session(self, api_key: str, request_token: str, checksum: str) -> dict:
        if not api_key or not request_token:
            raise KiteError("Invalid `api_key` or `request_token`.", "InputException", 400)
        account = self.get(api_key)
        if checksum != sha256_hex(api_key + request_token + account.api_secret):
            raise token_error("Invalid `checksum`.")   # checked first: a wrong secret does not use up the token
        self.sessions.redeem_request_token(api_key, request_token, accept_unissued=not self.strict)
        access_token = secrets.token_hex(16)
        self.sessions.start(api_key, access_token)
        return {**account.profile(), "api_key": api_key, "access_token": access_token,
                "public_token": secrets.token_hex(16), "enctoken": secrets.token_hex(24),
                "refresh_token": "", "silo": "", "login_time": kite_time(time.time())}

    def invalidate(self, api_key: str, access_token: str) -> None:
        if api_key and access_token:
            self.sessions.end(api_key, access_token)
