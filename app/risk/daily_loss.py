"""An account's P&L for the day, as the daily-loss limit sees it.

The figure is the sum of Kite's `m2m` over the account's net positions (`kite.positions()["net"]`):
what closed today (realised) plus what is open marked at the broker's last price — Kite values an
overnight position from yesterday's close, so it is the day's P&L, not the position's since it was
opened. (`pnl` stands in for a row without `m2m`.) The loss is its negative part.

Asking the broker for every order would spend Kite's 10 non-order calls a second, so the figure is
kept in Redis: the beat (workers.tasks.risk_limits) refreshes it every few seconds for the accounts
with a daily loss limit, and intake uses it when it is at most FRESH_S old, computing it itself
otherwise. A loss that reaches the limit refuses new orders; with `on_breach: "kill"` it also starts
the kill switch, once per account and trading day (IST), whoever saw the breach first.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import redis

from app.broker.margin_check import rupees
from app.broker.order_budget import budget_day
from app.core.redis_client import get_redis
from app.core.timestamps import iso
from app.risk.limit_broker import ask_broker
from app.risk.limit_errors import RiskCheckUnavailable, RiskLimitBreached
from app.risk.limit_store import KILL, Limits

log = logging.getLogger(__name__)

LIMIT = "max_daily_loss"
CACHE_KEY = "risk:daily_pnl:{account_id}"
CACHE_TTL_S = 300        # kept a while after the last refresh, to be shown (GET /accounts/{id}/limits)
FRESH_S = 10.0           # intake uses a figure at most this old; the beat refreshes it every 5 s (celeryconfig)
KILL_STARTED_KEY = "risk:daily_loss_kill:{account_id}:{day}"
KILL_STARTED_TTL_S = 36 * 3600


@dataclass(frozen=True)
class DailyPnl:
    pnl: Decimal        # the checked figure: realised + open positions marked to market
    realised: Decimal
    positions: int      # net position rows it was computed from (closed ones included)
    at: datetime

    @property
    def loss(self) -> Decimal:
        return max(Decimal("0.00"), -self.pnl)

    def age_s(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(timezone.utc)) - self.at).total_seconds()

    def view(self) -> dict:
        return {"pnl": float(self.pnl), "loss": float(self.loss), "realised": float(self.realised),
                "unrealised": float(self.pnl - self.realised), "positions": self.positions, "at": iso(self.at),
                "age_s": round(max(0.0, self.age_s()), 3)}

    def dumps(self) -> str:
        return json.dumps({"pnl": str(self.pnl), "realised": str(self.realised), "positions": self.positions,
                           "at": iso(self.at)})

    @classmethod
    def loads(cls, text: str | bytes) -> "DailyPnl":
        data = json.loads(text)
        return cls(Decimal(data["pnl"]), Decimal(data["realised"]), int(data["positions"]),
                   datetime.fromisoformat(data["at"].replace("Z", "+00:00")))


def day_pnl(net_positions: list[dict], at: datetime | None = None) -> DailyPnl:
    """The figure from Kite's net positions; ValueError when a row cannot be read."""
    pnl = realised = Decimal("0.00")
    for row in net_positions:
        if not isinstance(row, dict):
            raise ValueError(f"not a position: {row!r}"[:200])
        pnl += rupees(row["m2m"] if row.get("m2m") is not None else row["pnl"])
        realised += rupees(row.get("realised") or 0)
    return DailyPnl(pnl, realised, len(net_positions), at or datetime.now(timezone.utc))


def cached(account_id: str) -> DailyPnl | None:
    """The figure last computed (by the beat or by intake), or None."""
    try:
        text = get_redis().get(CACHE_KEY.format(account_id=account_id))
    except redis.RedisError:
        return None
    if not text:
        return None
    try:
        return DailyPnl.loads(text)
    except (ValueError, KeyError, TypeError):
        return None


def compute(account_id: str) -> DailyPnl:
    """The figure now, from the broker (kept in Redis); RiskCheckUnavailable when it cannot be read."""
    answer = ask_broker(account_id, LIMIT, lambda kite: kite.positions())
    try:
        figure = day_pnl(answer["net"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RiskCheckUnavailable(LIMIT, f"the broker's positions could not be read: {exc!r}"[:300]) from None
    try:
        get_redis().set(CACHE_KEY.format(account_id=account_id), figure.dumps(), ex=CACHE_TTL_S)
    except redis.RedisError:
        log.debug("daily P&L not cached", exc_info=True)
    return figure


def refresh(account_id: str, limits: Limits) -> DailyPnl:
    """The beat's refresh: compute the figure and act on a breach it shows (the kill switch, when the
    limits say so)."""
    figure = compute(account_id)
    if breached(figure, limits) and limits.on_breach == KILL:
        start_kill_switch_once(account_id, figure, limits)
    return figure


def current(account_id: str, max_age_s: float = FRESH_S) -> DailyPnl:
    """The figure intake checks: the kept one while fresh, else computed now."""
    figure = cached(account_id)
    if figure is not None and 0 <= figure.age_s() <= max_age_s:
        return figure
    return compute(account_id)


def breached(figure: DailyPnl, limits: Limits) -> bool:
    return limits.max_daily_loss is not None and figure.loss >= limits.max_daily_loss


def check_daily_loss(account_id: str, limits: Limits) -> None:
    """Raise RiskLimitBreached when the day's loss has reached the limit (RiskCheckUnavailable when
    it cannot be known)."""
    if limits.max_daily_loss is None:
        return
    figure = current(account_id)
    if breached(figure, limits):
        if limits.on_breach == KILL:  # started already when the beat saw it: then only a look in Redis
            start_kill_switch_once(account_id, figure, limits)
        raise RiskLimitBreached(
            LIMIT, limits.max_daily_loss, figure.loss,
            f"the account has lost ₹{figure.loss:,.2f} today (at {iso(figure.at)}), which reaches its daily "
            f"loss limit of ₹{limits.max_daily_loss:,.2f}; new orders are refused for the rest of the day")


def start_kill_switch_once(account_id: str, figure: DailyPnl, limits: Limits) -> None:
    """Start the kill switch for today's breach, once: under an Idempotency-Key of the account and
    the IST day (a second start gives back the same operation), and remembered in Redis so later
    refreshes do not ask again. A failure is logged; the orders are refused all the same."""
    day = budget_day().day.isoformat()
    started = KILL_STARTED_KEY.format(account_id=account_id, day=day)
    try:
        if get_redis().exists(started):
            return
    except redis.RedisError:
        pass  # the kill switch's own idempotency still holds
    reason = (f"daily loss limit: lost ₹{figure.loss:,.2f} today (at {iso(figure.at)}), limit "
              f"₹{limits.max_daily_loss:,.2f}")
    try:
        from app.risk import kill_switch  # the kill switch imports the order machinery: only when needed

        operation, created = kill_switch.start(account_id, reason=reason, requested_by="risk_limit",
                                               idempotency_key=f"risk-limit:{account_id}:{day}")
    except Exception:
        log.exception("the daily loss limit could not start the kill switch", extra={"account_id": account_id})
        return
    try:
        get_redis().set(started, getattr(operation, "id", "") or "1", ex=KILL_STARTED_TTL_S)
    except redis.RedisError:
        pass
    log.warning("daily loss limit reached: kill switch started", extra={
        "account_id": account_id, "loss": str(figure.loss), "limit": str(limits.max_daily_loss),
        "kill_switch_id": getattr(operation, "id", None), "started_now": created})


def refresh_watched() -> dict:
    """The beat's pass: refresh the figure of every active account with a daily loss limit and a live
    Kite session (a dead session cannot be asked, and places nothing either)."""
    from app.kite_session.state import is_live
    from app.risk.limit_store import accounts_watching_daily_loss, limits_of

    refreshed, breaches, unavailable = [], [], []
    for account_id in accounts_watching_daily_loss():
        if not is_live(account_id):
            continue
        limits = limits_of(account_id)
        try:
            figure = refresh(account_id, limits)
        except RiskCheckUnavailable as exc:
            unavailable.append(account_id)
            log.warning("daily P&L not refreshed", extra={"account_id": account_id, "error": exc.cause})
            continue
        refreshed.append(account_id)
        if breached(figure, limits):
            breaches.append(account_id)
    return {"refreshed": refreshed, "breached": breaches, "unavailable": unavailable}
