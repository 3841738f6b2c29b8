"""Login sessions: the request tokens the login page hands out and the access tokens they become.

Both live on the session clock (`sim.clock.now()`), so tests can reach an expiry without waiting:
- a request token is single use and lives `REQUEST_TOKEN_LIFETIME_S` (our choice: Kite says only
  "short-lived");
- an access token lives until the next 06:00 IST after it was issued, registered or first seen, as
  Kite's do. Once expired, logged out or expired by `expire_all`, it never works again (only
  registering it anew through `/_sim/accounts` starts a new session for it).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import clock
from .errors import token_error
from .expiries import IST

REQUEST_TOKEN_LIFETIME_S = 300
DAILY_EXPIRY_HOUR_IST = 6
# Kite's words for a request token it will not exchange; our explanation follows them.
INVALID_REQUEST_TOKEN = "Token is invalid or has expired"


def next_daily_expiry(epoch: float) -> float:
    """Epoch seconds of the first 06:00 IST strictly after `epoch`."""
    moment = datetime.fromtimestamp(epoch, IST)
    expiry = moment.replace(hour=DAILY_EXPIRY_HOUR_IST, minute=0, second=0, microsecond=0)
    if expiry <= moment:
        expiry += timedelta(days=1)   # IST has no daylight saving: wall-clock arithmetic is exact
    return expiry.timestamp()


@dataclass
class RequestToken:
    issued_at: float
    redeemed: bool = False


@dataclass
class AccessSession:
    expires_at: float
    ended: bool = False   # latched: a session that ended never comes back, even if the clock moves back

    def is_live(self, now: float) -> bool:
        if now >= self.expires_at:
            self.ended = True
        return not self.ended


class Sessions:
    """Tokens by (api_key, token): different api keys may use the same token text in lenient mode."""

    def __init__(self, daily_expiry: bool = True):
        self.daily_expiry = daily_expiry   # off (--no-daily-expiry): sessions end only by expire_all/logout
        self._request_tokens: dict[tuple[str, str], RequestToken] = {}
        self._access: dict[tuple[str, str], AccessSession] = {}

    # ---- request tokens -----------------------------------------------------------------
    def issue_request_token(self, api_key: str) -> str:
        token = secrets.token_hex(16)
        self._request_tokens[(api_key, token)] = RequestToken(clock.now())
        return token

    def redeem_request_token(self, api_key: str, request_token: str, accept_unissued: bool) -> None:
        """Use up a request token, or raise TokenException saying why it cannot be exchanged.

        `accept_unissued` (lenient mode): a token the login page never issued is taken as issued now,
        and so is single use like the others."""
        now = clock.now()
        issued = self._request_tokens.get((api_key, request_token))
        if issued is None:
            if not accept_unissued:
                raise token_error(f"{INVALID_REQUEST_TOKEN}: this request_token was not issued by the login page "
                                  f"(GET /connect/login) for this api_key.")
            issued = self._request_tokens[(api_key, request_token)] = RequestToken(now)
        if issued.redeemed:
            raise token_error(f"{INVALID_REQUEST_TOKEN}: this request_token was already exchanged for a session "
                              f"(request tokens are single use).")
        if now >= issued.issued_at + REQUEST_TOKEN_LIFETIME_S:
            raise token_error(f"{INVALID_REQUEST_TOKEN}: request tokens expire {REQUEST_TOKEN_LIFETIME_S // 60} "
                              f"minutes after the login.")
        issued.redeemed = True

    # ---- access tokens ------------------------------------------------------------------
    def start(self, api_key: str, access_token: str) -> None:
        """A new session for the token, valid until the next 06:00 IST."""
        now = clock.now()
        expires_at = next_daily_expiry(now) if self.daily_expiry else float("inf")
        self._access[(api_key, access_token)] = AccessSession(expires_at)

    def check(self, api_key: str, access_token: str, start_unknown: bool) -> None:
        """Raise TokenException unless the token has a live session; `start_unknown` (lenient mode)
        starts one for a token never seen before."""
        session = self._access.get((api_key, access_token))
        if session is None:
            if not start_unknown:
                raise token_error()
            self.start(api_key, access_token)
        elif not session.is_live(clock.now()):
            raise token_error()   # Kite's words for an expired token too

    def is_live(self, api_key: str, access_token: str) -> bool:
        session = self._access.get((api_key, access_token))
        return session is not None and session.is_live(clock.now())

    def end(self, api_key: str, access_token: str) -> None:
        """Log out: the token (known or not) never works again."""
        self._access[(api_key, access_token)] = AccessSession(clock.now(), ended=True)

    def expire_all(self) -> int:
        """End every session now; how many were live."""
        now = clock.now()
        live = [s for s in self._access.values() if s.is_live(now)]
        for session in live:
            session.ended = True
        return len(live)
