"""`/_sim/*`: controls that exist only in the paper broker (faults, state, market, accounts)."""
from __future__ import annotations

import json

from aiohttp import web


def _json_error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError:
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
            "ticker": sim.ticker.state(),
            "postbacks": sim.postbacks.state(),
            "market": {"steps": sim.market.steps, "frozen": sim.market.frozen},
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
        account = self.sim.accounts.register(body["api_key"], body.get("api_secret"), body.get("access_token"))
        return web.json_response({"api_key": account.api_key, "user_id": account.user_id})

    async def get_market(self, request):
        """Spots, the pricing rate and, for `tokens=a,b`, the smile volatility (no noise) and price."""
        market = self.sim.market
        vols = market.implied_vol()
        out = {"spot": {i.underlying: float(market.ltp[i.index]) for i in market.instruments if i.is_index},
               "rate": market.rate, "dividend_yield": 0.0, "frozen": market.frozen, "steps": market.steps,
               "instruments": {}}
        tokens = [t for t in request.query.get("tokens", "").split(",") if t.strip().isdigit()]
        for token in tokens:
            inst = market.by_token.get(int(token))
            if inst is not None:
                i = inst.index
                out["instruments"][token] = {"tradingsymbol": inst.tradingsymbol, "last_price": float(market.ltp[i]),
                                             "smile_vol": float(vols[i]) if market.is_option[i] else None}
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
            except StopIteration:
                return _json_error(f"unknown underlying {name}")
        for _ in range(int(body.get("steps", 0))):
            market.step()
        self.sim.broker.match_all()
        return await self.get_market(request)

    async def settings(self, request):
        """Runtime `tick_rate`, `postback_url` and `rate_limits` (bool)."""
        body = await _body(request)
        if "tick_rate" in body:
            self.sim.ticker.tick_rate = float(body["tick_rate"])
        if "postback_url" in body:
            self.sim.postbacks.url = body["postback_url"] or None
        if "rate_limits" in body:
            self.sim.limiter.limits.enabled = bool(body["rate_limits"])
        return web.json_response({"tick_rate": self.sim.ticker.tick_rate, "postback_url": self.sim.postbacks.url,
                                  "rate_limits": self.sim.limiter.limits.enabled})
