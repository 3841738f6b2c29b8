"""What one unit of an order costs, for the order-value limit.

LIMIT and SL orders: their limit price. SL-M: the trigger price — it becomes a market order there,
so that is where it fills, not at today's price. MARKET: the live price, from

1. the stream's latest tick (Redis hash `ticks:latest`, app.market.option_chain), when it carries an
   exchange timestamp at most LIVE_TICK_MAX_AGE_S old (an LTP-mode tick has none, and an instrument
   no longer streamed keeps its last tick there: neither can be told live);
2. else the broker's last price (`kite.ltp`, one call for the request's instruments within the
   account's non-order limiter), kept LTP_CACHE_S in Redis so a burst of orders on one instrument
   does not meet Kite's one quote call a second.

No price from either: RiskCheckUnavailable (503), never a value guessed.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal

import redis

from app.broker.margin_check import rupees
from app.core.redis_client import get_redis
from app.market.option_chain import latest_ticks
from app.risk.limit_broker import ask_broker
from app.risk.limit_errors import RiskCheckUnavailable

log = logging.getLogger(__name__)

LIMIT = "max_order_value"
LIVE_TICK_MAX_AGE_S = 30.0
LTP_CACHE_S = 2.0
LTP_KEY = "risk:ltp:{instrument}"
PRICED = ("LIMIT", "SL")


def own_unit_price(leg: dict) -> Decimal | None:
    """The unit price the order itself names (None for MARKET: it takes the market's)."""
    if leg["order_type"] in PRICED and leg.get("price") is not None:
        return Decimal(str(leg["price"]))
    if leg["order_type"] == "SL-M" and leg.get("trigger_price") is not None:
        return Decimal(str(leg["trigger_price"]))
    return None


def instrument_key(leg: dict) -> str:
    """Kite's name of the leg's instrument, as `kite.ltp` takes it."""
    return f"{leg['exchange']}:{leg['tradingsymbol']}"


def live_prices(account_id: str, legs: list[dict]) -> dict[str, Decimal]:
    """The live price of each leg's instrument, by instrument_key; RiskCheckUnavailable when one has none."""
    tokens = {instrument_key(leg): leg.get("instrument_token") for leg in legs}
    prices = _from_stream({key: token for key, token in tokens.items() if token})
    missing = [key for key in tokens if key not in prices]
    if missing:
        prices.update(_from_broker(account_id, missing))
    unpriced = [key for key in tokens if key not in prices]
    if unpriced:
        raise RiskCheckUnavailable(LIMIT, f"no live price for {', '.join(unpriced)}")
    return prices


def _from_stream(tokens: dict[str, int]) -> dict[str, Decimal]:
    if not tokens:
        return {}
    try:
        ticks = latest_ticks(get_redis(), list(tokens.values()))
    except redis.RedisError:
        return {}
    return live_tick_prices(tokens, ticks, datetime.now(timezone.utc))


def live_tick_prices(tokens: dict[str, int], ticks: dict[int, dict], now: datetime) -> dict[str, Decimal]:
    """The prices of the ticks (by token) that can be told live: stamped at most LIVE_TICK_MAX_AGE_S ago."""
    prices = {}
    for key, token in tokens.items():
        tick = ticks.get(token) or {}
        price = _positive(tick.get("last_price"))
        stamped = _instant(tick.get("exchange_timestamp"))
        if price is not None and stamped is not None and abs((now - stamped).total_seconds()) <= LIVE_TICK_MAX_AGE_S:
            prices[key] = price
    return prices


def _from_broker(account_id: str, keys: list[str]) -> dict[str, Decimal]:
    prices = _cached(keys)
    wanted = [key for key in keys if key not in prices]
    if wanted:
        answer = ask_broker(account_id, LIMIT, lambda kite: kite.ltp(wanted))
        fresh = {key: price for key in wanted
                 if (price := _positive((answer.get(key) or {}).get("last_price"))) is not None}
        _cache(fresh)
        prices.update(fresh)
    return prices


def _cached(keys: list[str]) -> dict[str, Decimal]:
    try:
        values = get_redis().mget([LTP_KEY.format(instrument=key) for key in keys])
    except redis.RedisError:
        return {}
    return {key: Decimal(_decoded(value)) for key, value in zip(keys, values) if value}


def _cache(prices: dict[str, Decimal]) -> None:
    if not prices:
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        for key, price in prices.items():
            pipe.set(LTP_KEY.format(instrument=key), str(price), px=int(LTP_CACHE_S * 1000))
        pipe.execute()
    except redis.RedisError:
        log.debug("live prices not cached", exc_info=True)


def _positive(value) -> Decimal | None:
    try:
        price = rupees(value)
    except ValueError:
        return None
    return price if price > 0 else None


def _instant(text) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        stamped = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamped if stamped.tzinfo else stamped.replace(tzinfo=timezone.utc)


def _decoded(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
