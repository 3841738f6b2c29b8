"""Each account's Kite session: `active`, `expired` (since when, and what said so) or `missing`.

Every Kite access token dies around 06:00 IST the next day; a person must log in again through
Kite's page. The state is stored on the account: `mark_expired` records a TokenException seen
anywhere (order call, stream, reconciler, health check) and `mark_active` a login. A token whose
06:00 IST has passed counts as expired even before a broker call says so (`sweep_passed_expiries`
records it, so the alert and the webhook fire without waiting for an order).

`mark_expired` is a compare-and-set on the stored (encrypted) token: a TokenException from an old
token that a newer login has already replaced changes nothing, and of several processes seeing
the same dead token only one announces it.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import or_, select, update

from app.core.config import get_settings
from app.core.crypto import decrypt
from app.core.db import new_session
from app.core.timestamps import iso
from app.models import Account, utcnow

log = logging.getLogger(__name__)

ACTIVE, EXPIRED, MISSING = "active", "expired", "missing"
STATES = (ACTIVE, EXPIRED, MISSING)
IST = timezone(timedelta(hours=5, minutes=30))
KITE_DAILY_EXPIRY = (6, 0)  # Kite's 06:00 IST (KITE_SESSION_EXPIRY_IST)


class SessionNotLive(Exception):
    """An order for an account whose Kite session is expired or missing: a person must log in."""

    def __init__(self, account_id: str, view: dict) -> None:
        self.account_id = account_id
        self.view = view
        what = ("has expired" if view["state"] == EXPIRED else "does not exist yet (never logged in)")
        super().__init__(f"the Kite session of account {account_id!r} {what}: log in again at "
                         f"{view['login_url']}")

    @property
    def details(self) -> dict:
        return {"account_id": self.account_id, "login_url": self.view["login_url"], "session": self.view}


def next_daily_expiry(moment: datetime, at: tuple[int, int] = KITE_DAILY_EXPIRY) -> datetime:
    """The first `at` (06:00) IST strictly after `moment` (as UTC): when Kite ends a token issued then."""
    local = moment.astimezone(IST)
    expiry = local.replace(hour=at[0], minute=at[1], second=0, microsecond=0)
    if expiry <= local:
        expiry += timedelta(days=1)  # IST has no daylight saving: wall-clock arithmetic is exact
    return expiry.astimezone(timezone.utc)


def login_path(account_id: str) -> str:
    return f"/accounts/{account_id}/login"


def state_of(account: Account, now: datetime | None = None) -> str:
    if account.access_token_enc is None:
        return MISSING
    if account.session_status == EXPIRED:
        return EXPIRED
    now = now or utcnow()
    if account.session_expires_at is not None and account.session_expires_at <= now:
        return EXPIRED  # Kite has ended it, whether or not a broker call has said so yet
    return ACTIVE


def session_view(account: Account, now: datetime | None = None) -> dict:
    """The account's session as the API, the dashboard and the order stream show it."""
    now = now or utcnow()
    state = state_of(account, now)
    expires_at = account.session_expires_at
    expired_at = account.session_expired_at
    if state == EXPIRED and expired_at is None:
        expired_at = expires_at  # passed its 06:00 IST before any broker call noticed
    return {
        "state": state,
        "login_at": iso(account.session_login_at),
        "expires_at": iso(expires_at) if state == ACTIVE else None,
        "expires_in_s": max(0, int((expires_at - now).total_seconds())) if state == ACTIVE and expires_at else None,
        "expired_at": iso(expired_at) if state == EXPIRED else None,
        "reason": account.session_error if state == EXPIRED else None,
        "login_url": login_path(account.id),
    }


def account_session(account_id: str) -> dict | None:
    """The session view of one account (None: no such account)."""
    with new_session() as session:
        account = session.get(Account, account_id)
        return session_view(account) if account is not None else None


def require_live_session(account_id: str) -> None:
    """Raise SessionNotLive unless the account's session is active (an unknown account passes:
    the caller's own lookup answers 404)."""
    view = account_session(account_id)
    if view is not None and view["state"] != ACTIVE:
        raise SessionNotLive(account_id, view)


def is_live(account_id: str) -> bool:
    view = account_session(account_id)
    return view is not None and view["state"] == ACTIVE


def start_session(account: Account, login_at: datetime | None = None) -> None:
    """A new token was stored on `account` (login or registration): active until the next 06:00 IST
    (KITE_SESSION_EXPIRY_IST; "off": until the broker refuses it).
    The caller commits, then announces (app.kite_session.announce.session_started)."""
    login_at = login_at or utcnow()
    daily_expiry = get_settings().kite_session_expiry_ist
    account.session_status = ACTIVE
    account.session_login_at = login_at
    account.session_expires_at = next_daily_expiry(login_at, daily_expiry) if daily_expiry else None
    account.session_expired_at = None
    account.session_error = None


def clear_session(account: Account) -> None:
    for name in ("session_status", "session_login_at", "session_expires_at", "session_expired_at",
                 "session_error"):
        setattr(account, name, None)


def mark_expired(account_id: str, reason: str, source: str, access_token: str | None = None) -> bool:
    """Record that the broker refused the account's token; True when this call changed the state
    (and so announced it). `access_token`: the token that was refused — when the account holds
    another one by now (a newer login), nothing changes."""
    now = utcnow()
    with new_session() as session:
        account = session.get(Account, account_id)
        if account is None or account.access_token_enc is None:
            return False
        stored = account.access_token_enc
        if access_token is not None and _token_of(stored) != access_token:
            return False
        expired_at = now
        if account.session_status != EXPIRED and account.session_expires_at and account.session_expires_at <= now:
            expired_at = account.session_expires_at  # it ended at 06:00 IST; noticed only now
        result = session.execute(
            update(Account)
            .where(Account.id == account_id, Account.access_token_enc == stored,
                   or_(Account.session_status.is_(None), Account.session_status != EXPIRED))
            .values(session_status=EXPIRED, session_expired_at=expired_at,
                    session_error=f"{source}: {reason}"[:500])
            .execution_options(synchronize_session=False))
        session.commit()
        if result.rowcount != 1:
            return False
        session.expire_all()
        view = session_view(session.get(Account, account_id), now)
    log.warning("Kite session expired for account %s (%s); log in again at %s", account_id, source,
                view["login_url"], extra={"account_id": account_id, "source": source, "reason": reason[:200]})
    from app.kite_session.announce import session_expired  # announce imports this module

    session_expired(account_id, view)
    return True


def _token_of(encrypted: str) -> str | None:
    try:
        return decrypt(encrypted)
    except RuntimeError:
        return None


def sweep_passed_expiries(now: datetime | None = None) -> list[str]:
    """Record the sessions whose 06:00 IST has passed without a broker call noticing (beat)."""
    now = now or utcnow()
    with new_session() as session:
        due = list(session.scalars(select(Account.id).where(
            Account.access_token_enc.is_not(None), Account.session_expires_at <= now,
            or_(Account.session_status.is_(None), Account.session_status != EXPIRED))))
    return [account_id for account_id in due
            if mark_expired(account_id, "Kite's daily expiry (06:00 IST) has passed", "clock")]


def streaming_account_ids() -> list[str]:
    """Active accounts whose session is live: the ones the stream may connect with."""
    now = utcnow()
    with new_session() as session:
        accounts = session.scalars(select(Account).where(
            Account.active.is_(True), Account.access_token_enc.is_not(None)))
        return [account.id for account in accounts if state_of(account, now) == ACTIVE]
