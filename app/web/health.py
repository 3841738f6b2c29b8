"""Health of the service and its dependencies, for GET /health.

`ok`: everything answers. `degraded`: the service accepts requests but a
non-critical part is missing (broker unreachable or refusing an account's
session, stream silent while subscriptions exist, no instrument registry yet) —
orders queue up and go out when it returns. 503: the
database or Redis is down, so nothing can be accepted safely.

Per-account detail is for a caller with a key, and only about its accounts (every one for an
admin key); without a key no account is named. The status counts every account all the same:
- `sessions`: each active account's Kite session (active until its 06:00 IST, expired since when
  and why, or missing) with its login URL; an expired one makes the broker check `down` (degraded);
- `checks.broker.accounts`: each account's session at the broker, and in `checks.broker.error`
  the accounts the broker refuses (without a key: how many);
- `egress`: how each active account's order requests leave the service (its source address or
  masked proxy; null: the default route), for the operator checking Kite's static-IP rule.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import requests
from sqlalchemy import func, select, text

from app.core.config import get_settings
from app.core.db import new_session
from app.market.instrument_refresh import is_stale, registry_state
from app.models import Order, Subscription
from app.core.timestamps import iso
from app.core.redis_client import get_redis

QUEUES = ("orders", "batches", "webhooks", "maintenance")
BROKER_CHECK_KEY = "health:broker:{account}"
BROKER_CHECK_TTL_S = 30
STREAM_HEARTBEAT_PATTERN = "stream:heartbeat:*"


def _timed(check):
    started = time.perf_counter()
    try:
        detail = check() or {}
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2), **detail}
    except Exception as exc:  # a health check reports failures, it does not raise them
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}


def _database():
    with new_session() as session:
        session.execute(text("SELECT 1"))


def _instruments():
    """The registry's size and age; empty means every order is refused as unknown."""
    with new_session() as session:
        count, loaded_at = registry_state(session)
    if not count:
        raise RuntimeError("the instrument registry is empty (a worker loads it from the broker)")
    return {"count": count, "loaded_at": iso(loaded_at),
            "age_s": round((datetime.now(timezone.utc) - loaded_at).total_seconds()),
            "stale": is_stale(loaded_at)}


def _redis():
    get_redis().ping()


def _broker():
    # Any HTTP answer means the broker is reachable; each account's session is checked below.
    requests.get(get_settings().kite_api_root + "/", timeout=2)
    return {"accounts": _broker_accounts()}


def _broker_check() -> dict:
    check = _timed(_broker)
    if any(c["status"] != "ok" for c in check.get("accounts", {}).values()):
        check["status"] = "down"  # an account whose session the broker refuses degrades the service
    return check


def _shown_broker(check: dict, may_see) -> dict:
    """The broker check as this caller may see it: its accounts only, none without a key."""
    accounts = check.pop("accounts", None)
    if accounts is None:
        return check
    visible = {a: c for a, c in accounts.items() if may_see is not None and may_see(a)}
    if may_see is not None:
        check["accounts"] = visible
    refused = sorted(a for a, c in accounts.items() if c["status"] != "ok")
    if refused:
        check["error"] = _refusals(refused, accounts, visible)
    return check


def _refusals(refused: list[str], accounts: dict[str, dict], visible: dict) -> str:
    named = [a for a in refused if a in visible]
    hidden = len(refused) - len(named)
    said = [f"broker refuses accounts {named}: " + "; ".join(accounts[a]["error"] for a in named[:3])] if named else []
    if hidden:
        said.append(f"broker refuses {hidden} {'other ' if named else ''}account(s)")
    return "; ".join(said)


def _account_check(creds) -> dict:
    from app.broker.client import kite_client
    from app.kite_session.refusals import noticed

    started = time.perf_counter()
    kite = kite_client(creds, timeout=2)
    try:
        kite.profile()
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                "checked_at": time.time()}
    except Exception as exc:
        noticed(creds.account_id, exc, "health", kite)  # a refused token: the session has expired
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:200], "checked_at": time.time()}


def _cached_check(cached: bytes | None, login_at: datetime | None) -> dict | None:
    """A cached check, unless it was made before the account's latest login (it tested the old token)."""
    if not cached:
        return None
    check = json.loads(cached)
    checked_at = check.pop("checked_at", None)
    if checked_at is not None and login_at is not None and checked_at < login_at.timestamp():
        return None
    return check


def _broker_accounts() -> dict[str, dict]:
    """Each account's session at the broker (profile call), cached so health checks stay cheap
    and within the broker's request limits."""
    from sqlalchemy import select as sql_select

    from app.accounts import credentials
    from app.models import Account

    from app.kite_session.state import EXPIRED, session_view

    redis = get_redis()
    results, missing = {}, []
    with new_session() as session:
        for account in session.scalars(sql_select(Account).where(
                Account.active.is_(True), Account.access_token_enc.is_not(None))):
            view = session_view(account)
            if view["state"] == EXPIRED:  # known dead: no broker call until someone logs in
                results[account.id] = {"status": "down", "error": f"Kite session expired at {view['expired_at']}: "
                                                                  f"log in again at {view['login_url']}"}
                continue
            cached = _cached_check(redis.get(BROKER_CHECK_KEY.format(account=account.id)), account.session_login_at)
            if cached:
                results[account.id] = cached
            else:
                missing.append(credentials(account))
    if missing:
        with ThreadPoolExecutor(max_workers=min(8, len(missing))) as pool:
            for creds, check in zip(missing, pool.map(_account_check, missing)):
                redis.set(BROKER_CHECK_KEY.format(account=creds.account_id), json.dumps(check),
                          ex=BROKER_CHECK_TTL_S)
                check.pop("checked_at")
                results[creds.account_id] = check
    return results


def _egress() -> dict[str, dict | None]:
    from app.accounts import egress_of
    from app.models import Account

    def shown(account) -> dict | None:
        try:
            egress = egress_of(account)
        except Exception as exc:  # a proxy URL stored under another CREDENTIALS_KEY: say so, do not fail
            return {"error": f"{type(exc).__name__}: {exc}"[:200]}
        return egress.public() if egress else None

    with new_session() as session:
        accounts = session.scalars(select(Account).where(Account.active.is_(True)).order_by(Account.id))
        return {account.id: shown(account) for account in accounts}


def _sessions(may_see) -> dict[str, dict]:
    """The Kite session (state, expiry, where to log in again) of each active account `may_see(id)`."""
    from app.kite_session.state import session_view
    from app.models import Account

    with new_session() as session:
        accounts = session.scalars(select(Account).where(Account.active.is_(True)).order_by(Account.id))
        return {account.id: session_view(account) for account in accounts if may_see(account.id)}


def _stream_heartbeats() -> list[str]:
    return [k.decode() for k in get_redis().scan_iter(STREAM_HEARTBEAT_PATTERN, count=100)]


def report(may_see=None) -> tuple[dict, int]:
    """`may_see(account_id)`: the caller's key may see that account's detail (None: no key, no account named)."""
    checks = {"database": _timed(_database), "redis": _timed(_redis), "broker": _broker_check()}
    body: dict = {"checks": checks}
    critical_down = checks["database"]["status"] != "ok" or checks["redis"]["status"] != "ok"

    if checks["database"]["status"] == "ok":
        checks["instruments"] = _timed(_instruments)
        with new_session() as session:
            counts = dict(session.execute(select(Order.status, func.count()).group_by(Order.status)).all())
            subscriptions = session.scalar(select(func.count()).select_from(Subscription)) or 0
        body["tasks"] = {
            "pending": counts.get("QUEUED", 0) + counts.get("SUBMITTING", 0),
            "open": counts.get("OPEN", 0),
            "completed": counts.get("COMPLETE", 0),
            "dead_letter": counts.get("DEAD_LETTER", 0),
        }
        if may_see is not None:
            body["egress"] = {a: e for a, e in _egress().items() if may_see(a)}
            body["sessions"] = _sessions(may_see)
    else:
        subscriptions = 0

    if checks["redis"]["status"] == "ok":
        redis = get_redis()
        body["queues"] = {name: redis.llen(name) for name in QUEUES}
        heartbeats = _stream_heartbeats()
        checks["stream"] = {"status": "ok" if heartbeats or not subscriptions else "down",
                            "processes": len(heartbeats), "subscriptions": subscriptions}

    # The status counts every account; only then is the broker check cut to what the caller may see.
    degraded = any(c["status"] != "ok" for c in checks.values())
    checks["broker"] = _shown_broker(checks["broker"], may_see)
    if critical_down:
        body["status"] = "unavailable"
        return body, 503
    body["status"] = "degraded" if degraded else "ok"
    return body, 200
