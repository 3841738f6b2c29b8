"""`/_sim/*`: controls that exist only in the paper broker (faults, state, market, accounts)."""
from __future__ import annotations

import json

from aiohttp import web

from . import clock
from . import market_hours
from .login import validate_redirect_url
from .static_ip import parse_allowed_ips


def _json_error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, RecursionError):
        raise web.HTTPBadRequest(text='{"error": "body must be JSON"}', content_type="application/json")
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}', content_type="application/json")
    return body


class AdminRoutes:
    def __init__(self, sim):
        self.sim = sim

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/_sim/faults", self.get_faults)
        app.router.add_post("/_sim/faults", self.set_faults)
        app.router.add_delete("/_sim/faults", self.clear_faults)
        app.router.add_get("/_sim/state", self.state)
        app.router.add_get("/_sim/orders", self.orders)
        app.router.add_post("/_sim/accounts", self.add_account)
        app.router.add_get("/_sim/market", self.get_market)
        app.router.add_post("/_sim/market", self.set_market)
        app.router.add_post("/_sim/settings", self.settings)

    async def get_faults(self, request):
        return web.json_response(self.sim.faults.as_dict())

    async def set_faults(self, request):
        body = await _body(request)
        try:
            self.sim.faults.merge(body)
        except (ValueError, TypeError) as exc:
            return _json_error(str(exc))
        if self.sim.faults.take_drop_ws():
            self.sim.ticker.drop_all()
        return web.json_response(self.sim.faults.as_dict())

    async def clear_faults(self, request):
        self.sim.faults.clear()
        return web.json_response(self.sim.faults.as_dict())

    async def state(self, request):
        sim = self.sim
        return web.json_response({
            "orders_placed": dict(sim.broker.placed),
            "open_orders": len(sim.broker.resting),
            "faults": sim.faults.as_dict(),
            "faults_consumed": dict(sim.faults.consumed),
            "rate_limited": sim.limiter.rejected,
            "rate_limited_by_class": dict(sim.limiter.rejected_by_class),  # order, quote, historical, other
            "ticker": sim.ticker.state(),
            "postbacks": sim.postbacks.state(),
            "market": {"steps": sim.market.steps, "frozen": sim.market.frozen},
            "universe": {"name": sim.market.universe, "instruments": sim.market.n},
            "market_hours": market_hours.enabled(), "market_open": market_hours.is_open(),
            "amo_waiting": market_hours.waiting_count(), "gtt": sim.gtt.state(),
        })

    async def orders(self, request):
        api_key = request.query.get("api_key")
        if not api_key:
            return _json_error("api_key is required")
        account = self.sim.accounts.get(api_key)
        return web.json_response([o.snapshot() for o in account.orders.values()])

    async def add_account(self, request):
        body = await _body(request)
        if not body.get("api_key"):
            return _json_error("api_key is required")
        cash = body.get("cash")
        if cash is not None and (isinstance(cash, bool) or not isinstance(cash, (int, float)) or cash < 0
                                 or cash != cash or cash == float("inf")):
            return _json_error("cash must be a non-negative number of rupees")
        try:  # absent: unchanged; null (or [] / ""): cleared
            redirect_url = validate_redirect_url(body.get("redirect_url"))
            allowed_ips = parse_allowed_ips(body.get("allowed_ips"))
        except ValueError as exc:
            return _json_error(str(exc))
        account = self.sim.accounts.register(body["api_key"], body.get("api_secret"), body.get("access_token"))
        if cash is not None:
            account.cash = float(cash)
        if "redirect_url" in body:
            account.redirect_url = redirect_url
        if "allowed_ips" in body:
            account.allowed_ips = allowed_ips
        return web.json_response({"api_key": account.api_key, "user_id": account.user_id, "cash": account.cash,
                                  "redirect_url": account.redirect_url, "allowed_ips": list(account.allowed_ips)})

    async def get_market(self, request):
        """Spots, the pricing rate and, for `tokens=a,b`, the smile volatility (no noise), price and
        tick weight (the instrument ticks at tick_rate × tick_weight)."""
        market = self.sim.market
        vols = market.implied_vol()
        out = {"spot": {i.underlying: float(market.ltp[i.index]) for i in market.spot_instruments},
               "rate": market.rate, "dividend_yield": 0.0, "frozen": market.frozen, "steps": market.steps,
               "instruments": {}}
        tokens = [t for t in request.query.get("tokens", "").split(",") if t.strip().isdigit()]
        for token in tokens:
            inst = market.by_token.get(int(token))
            if inst is not None:
                i = inst.index
                out["instruments"][token] = {"tradingsymbol": inst.tradingsymbol, "last_price": float(market.ltp[i]),
                                             "smile_vol": float(vols[i]) if market.is_option[i] else None,
                                             "tick_weight": float(market.liquidity[i])}
        return web.json_response(out)

    async def set_market(self, request):
        """`frozen` stops the walk; `spot` {"NIFTY": 24000} jumps an index; `steps` advances now."""
        body = await _body(request)
        market = self.sim.market
        if "frozen" in body:
            market.frozen = bool(body["frozen"])
        for name, value in (body.get("spot") or {}).items():
            try:
                market.set_spot(name, float(value))
            except KeyError:
                return _json_error(f"unknown underlying {name}")
        for _ in range(int(body.get("steps", 0))):
            market.step()
        self.sim.broker.match_all()
        self.sim.after_market_step()
        return await self.get_market(request)

    async def settings(self, request):
        """Runtime `tick_rate`, `postback_url`, `rate_limits` (bool), `now` (the session clock),
        `expire_sessions` (true: every access token expires now) and `order_limits`."""
        body = await _body(request)
        if "expire_sessions" in body and not isinstance(body["expire_sessions"], bool):
            return _json_error("expire_sessions must be true or false")
        if "order_limits" in body:
            try:
                self.sim.limiter.set_order_limits(body["order_limits"])
            except ValueError as exc:
                return _json_error(str(exc))
        if "now" in body:
            try:
                clock.set_now(body["now"])
            except (TypeError, ValueError):
                return _json_error("now must be an ISO-8601 instant or null")
        if body.get("expire_sessions"):
            self.sim.accounts.sessions.expire_all()
        if "now" in body or body.get("expire_sessions"):
            # a moved clock may have passed 06:00 IST: sockets whose session ended are closed either way
            self.sim.ticker.close_ended_sessions(self.sim.accounts.sessions)
        if "tick_rate" in body:
            self.sim.ticker.tick_rate = float(body["tick_rate"])
        if "postback_url" in body:
            self.sim.postbacks.url = body["postback_url"] or None
        if "rate_limits" in body:
            self.sim.limiter.limits.enabled = bool(body["rate_limits"])
        if "market_hours" in body:
            if not isinstance(body["market_hours"], bool):
                return _json_error("market_hours must be true or false")
            market_hours.set_enabled(body["market_hours"])
        if "freeze_quantities" in body:
            try:
                self.sim.broker.freeze.update(dict(body["freeze_quantities"] or {}))
            except (TypeError, ValueError) as exc:
                return _json_error(str(exc))
        return web.json_response({"tick_rate": self.sim.ticker.tick_rate, "postback_url": self.sim.postbacks.url,
                                  "rate_limits": self.sim.limiter.limits.enabled,
                                  "order_limits": self.sim.limiter.order_limits(),
                                  "freeze_quantities": self.sim.broker.freeze.limits,
                                  "market_hours": market_hours.enabled(),
                                  "now": clock.now_ist().isoformat(timespec="seconds")})
