"""Kite Connect v3 REST routes, with Kite's envelope, auth, rate limits and injected faults."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from aiohttp import web

from . import market_hours
from . import quotes
from .errors import KiteError, input_error, too_many_requests
from .history import INTERVAL_MINUTES, MAX_DAYS
from .ratelimit import HISTORICAL, ORDER, OTHER, QUOTE
from .static_ip import check_order_source
from .universe import InstrumentDump

PUBLIC = "public"   # request class of routes that need no session
PAGE = "page"       # browser pages (the login page): no faults, no session, errors are not Kite JSON


def ok(data) -> web.Response:
    return web.json_response({"status": "success", "data": data})


def fail(err: KiteError) -> web.Response:
    return web.json_response({"status": "error", "message": err.message, "error_type": err.error_type,
                              "data": None}, status=err.status)


def injected_error(status: int) -> KiteError:
    if status == 429:
        return too_many_requests()
    error_type = "NetworkException" if status in (502, 503, 504) else "GeneralException"
    return KiteError(f"Service unavailable (paper broker fault, HTTP {status}).", error_type, status)


def account_from(request: web.Request, accounts):
    header = request.headers.get("Authorization", "")
    api_key = access_token = None
    if header.startswith("token ") and ":" in header:
        api_key, _, access_token = header[len("token "):].partition(":")
    return accounts.authenticate(api_key, access_token)


async def form_params(request: web.Request) -> dict:
    if request.method in ("POST", "PUT"):
        return dict(await request.post())
    return dict(request.query)


async def json_list(request: web.Request) -> list:
    """The margin calculators' body: a JSON list of order objects."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):   # RecursionError: absurdly deep nesting
        raise input_error("Invalid JSON body: expected a list of orders.")
    if not isinstance(body, list) or not all(isinstance(o, dict) for o in body):
        raise input_error("Invalid JSON body: expected a list of orders.")
    if not body:
        raise input_error("No orders to calculate margins for.")
    return body


class KiteRoutes:
    def __init__(self, sim):
        self.sim = sim            # sim.server.Simulator: broker, market, history, limiter, faults
        self.classes: dict = {}   # handler -> request class
        self._instrument_dumps: dict = {}   # exchange (None: all) -> InstrumentDump

    def add_to(self, app: web.Application) -> None:
        r = [
            ("POST", "/session/token", self.session_token, PUBLIC),
            ("DELETE", "/session/token", self.session_logout, PUBLIC),
            ("POST", "/session/refresh_token", self.session_refresh, PUBLIC),
            ("GET", "/user/profile", self.profile, OTHER),
            ("GET", "/user/margins", self.margins, OTHER),
            ("GET", "/user/margins/{segment}", self.margins_segment, OTHER),
            ("POST", "/margins/orders", self.order_margins, OTHER),
            ("POST", "/margins/basket", self.basket_margins, OTHER),
            ("GET", "/orders", self.orders, OTHER),
            ("GET", "/trades", self.trades, OTHER),
            ("POST", "/orders/{variety}", self.place, ORDER),
            ("PUT", "/orders/{variety}/{order_id}", self.modify, ORDER),
            ("DELETE", "/orders/{variety}/{order_id}", self.cancel, ORDER),
            ("GET", "/orders/{order_id}", self.order_history, OTHER),
            ("GET", "/orders/{order_id}/trades", self.order_trades, OTHER),
            ("GET", "/portfolio/positions", self.positions, OTHER),
            ("PUT", "/portfolio/positions", self.convert_position, OTHER),
            ("GET", "/portfolio/holdings", self.holdings, OTHER),
            ("GET", "/instruments", self.instruments, PUBLIC),
            ("GET", "/instruments/historical/{token}/{interval}", self.historical, HISTORICAL),
            ("GET", "/instruments/{exchange}", self.instruments, PUBLIC),
            ("GET", "/quote", self.quote, QUOTE),
            ("GET", "/quote/ltp", self.ltp, QUOTE),
            ("GET", "/quote/ohlc", self.ohlc, QUOTE),
        ]
        for method, path, handler, request_class in r:
            self.register(app, method, path, handler, request_class)

    def register(self, app: web.Application, method: str, path: str, handler, request_class: str) -> None:
        """Add a Kite route; `request_class` says which rate limit it counts against (or PUBLIC)."""
        app.router.add_route(method, path, handler)
        self.classes[getattr(handler, "__func__", handler)] = request_class

    # ---- middleware ---------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler):
        route = request.match_info.route
        if request.path.startswith("/_sim") or request.path == "/ws":
            return await handler(request)
        handler_fn = request.match_info.handler
        request_class = self.classes.get(getattr(handler_fn, "__func__", handler_fn))
        if request_class is None:  # no such route: Kite answers JSON, never HTML
            return fail(KiteError("Route not found", "GeneralException", 404))
        if request_class == PAGE:
            return await handler(request)
        sim = self.sim
        try:
            delay = sim.faults.latency_s()
            if delay:
                await asyncio.sleep(delay)
            status = sim.faults.call_error_status()
            if status:
                raise injected_error(status)
            if request_class != PUBLIC:
                request["account"] = account = account_from(request, sim.accounts)
                placing = request.method == "POST" and route.resource.canonical == "/orders/{variety}"
                refusal = sim.limiter.refusal(account.api_key, request_class, is_placement=placing)
                if refusal:
                    raise refusal
                # after the limiter: a refused order request still counts towards the limits
                check_order_source(account.allowed_ips, request.method, route.resource.canonical, request.remote)
            return await handler(request)
        except KiteError as err:
            return fail(err)

    # ---- session and user ---------------------------------------------------------------
    async def session_token(self, request):
        p = await form_params(request)
        return ok(self.sim.accounts.create_session(p.get("api_key", ""), p.get("request_token", ""),
                                                   p.get("checksum", "")))

    async def session_logout(self, request):
        self.sim.accounts.invalidate(request.query.get("api_key", ""), request.query.get("access_token", ""))
        # its open ticker sockets end too (1008), as with expire_sessions: a test can end one account
        self.sim.ticker.close_ended_sessions(self.sim.accounts.sessions)
        return ok(True)

    async def session_refresh(self, request):
        raise KiteError("The paper broker issues no refresh tokens; create a new session.", "TokenException", 403)

    async def profile(self, request):
        return ok(request["account"].profile())

    async def margins(self, request):
        return ok(self.sim.broker.margins(request["account"]))

    async def margins_segment(self, request):
        segment = request.match_info["segment"]
        all_margins = self.sim.broker.margins(request["account"])
        if segment not in all_margins:
            raise input_error("Invalid segment.")
        return ok(all_margins[segment])

    async def order_margins(self, request):
        orders = await json_list(request)
        return ok(self.sim.margin_calc.orders(request["account"], orders, request.query.get("mode") == "compact"))

    async def basket_margins(self, request):
        orders = await json_list(request)
        consider = request.query.get("consider_positions", "true").lower() != "false"
        return ok(self.sim.margin_calc.basket(request["account"], orders, consider,
                                              request.query.get("mode") == "compact"))

    # ---- orders -------------------------------------------------------------------------
    async def orders(self, request):
        return ok([o.snapshot() for o in request["account"].orders.values()])

    async def trades(self, request):
        return ok(list(request["account"].trades))

    async def order_history(self, request):
        order = self.sim.broker.get_order(request["account"], request.match_info["order_id"])
        return ok(list(order.history))

    async def order_trades(self, request):
        order_id = request.match_info["order_id"]
        self.sim.broker.get_order(request["account"], order_id)
        return ok([t for t in request["account"].trades if t["order_id"] == order_id])

    async def place(self, request):
        params = await form_params(request)
        if str(params.get("autoslice", "")).lower() == "true":
            return ok(self.sim.broker.place_autoslice(request["account"], request.match_info["variety"], params))
        order = self.sim.broker.place(request["account"], request.match_info["variety"], params)
        if self.sim.faults.take_accept_then_timeout():
            # The order exists; the caller's HTTP client gives up before this answer comes.
            await asyncio.sleep(self.sim.faults.settings.timeout_s)
        return ok({"order_id": order.order_id})

    async def modify(self, request):
        params = await form_params(request)
        m = request.match_info
        order = self.sim.broker.modify(request["account"], m["variety"], m["order_id"], params)
        return ok({"order_id": order.order_id})

    async def cancel(self, request):
        m = request.match_info
        waiting = market_hours.cancel_waiting(self.sim.broker, request["account"], m["order_id"])
        if waiting:   # an AMO order still waiting for the open
            return ok({"order_id": waiting.order_id})
        order = self.sim.broker.cancel(request["account"], m["variety"], m["order_id"])
        return ok({"order_id": order.order_id})

    # ---- portfolio ----------------------------------------------------------------------
    async def positions(self, request):
        return ok(self.sim.broker.positions(request["account"]))

    async def convert_position(self, request):
        raise input_error("Position conversion is not supported by the paper broker.")

    async def holdings(self, request):
        return ok([])

    # ---- market data --------------------------------------------------------------------
    async def instruments(self, request):
        market = self.sim.market
        exchange = (request.match_info.get("exchange") or "").upper() or None
        dump = self._instrument_dumps.get(exchange)
        if dump is None:   # the list never changes: its fixed columns are formatted once
            dump = self._instrument_dumps[exchange] = InstrumentDump(
                [i for i in market.instruments if exchange is None or i.exchange == exchange])
        return web.Response(text=dump.text(market.ltp), content_type="text/csv")

    async def quote(self, request):
        return ok(quotes.quote(self.sim.market, request.query.getall("i", [])))

    async def ltp(self, request):
        return ok(quotes.ltp(self.sim.market, request.query.getall("i", [])))

    async def ohlc(self, request):
        return ok(quotes.ohlc(self.sim.market, request.query.getall("i", [])))

    async def historical(self, request):
        m, q = request.match_info, request.query
        interval = m["interval"]
        if interval not in INTERVAL_MINUTES:
            raise input_error(f"Invalid interval `{interval}`.")
        token = m["token"]
        inst = self.sim.market.by_token.get(int(token)) if token.isdigit() else None
        if inst is None:
            raise input_error("Invalid token.")
        start, end = parse_when(q.get("from"), "from"), parse_when(q.get("to"), "to", end_of_day=True)
        if start > end:
            raise input_error("Invalid date range: `from` is after `to`.")
        if end - start > timedelta(days=MAX_DAYS[interval]):
            raise input_error(f"interval exceeds max limit: {MAX_DAYS[interval]} days")
        with_oi = q.get("oi") in ("1", "true", "True")
        return ok({"candles": self.sim.history.candles(inst, interval, start, end, with_oi)})


def parse_when(text: str | None, name: str, end_of_day: bool = False) -> datetime:
    """`yyyy-mm-dd hh:mm:ss` or `yyyy-mm-dd` (what the client sends for a date)."""
    if not text:
        raise input_error(f"Missing `{name}`.")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            when = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d" and end_of_day:
            when = when.replace(hour=23, minute=59, second=59)
        return when
    raise input_error(f"Invalid `{name}`: use yyyy-mm-dd hh:mm:ss.")
