"""Assembles the paper broker: market, accounts, broker, ticker and HTTP routes on one port."""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from .accounts import Accounts
from .admin import AdminRoutes
from .broker import Broker
from .config import SimConfig
from .faults import Faults
from .gtt import GttBook, GttRoutes
from .history import History
from . import market_hours
from .login import LoginPage
from .margin_calc import MarginCalculator
from .market import Market
from .postback import PostbackSender
from .ratelimit import Limits, RateLimiter
from .rest import PAGE, KiteRoutes
from .ticker import TickerHub


class Simulator:
    def __init__(self, config: SimConfig):
        self.config = config
        self.market = Market(seed=config.seed, rate=config.rate, step_s=config.market_step_ms / 1000.0,
                             strikes_each_side=config.strikes_each_side, universe=config.universe)
        self.market.frozen = config.frozen
        self.history = History(config.seed, self.market)
        self.accounts = Accounts(config.api_secret, strict=config.strict_auth)
        self.accounts.default_cash = config.cash
        self.accounts.sessions.daily_expiry = config.daily_expiry
        for spec in config.accounts:
            key, _, rest = spec.partition(":")
            secret, _, token = rest.partition(":")
            self.accounts.register(key, secret or None, token or None)
        self.faults = Faults(seed=config.seed)
        self.faults.merge(config.faults)
        self.limiter = RateLimiter(Limits(
            order_per_second=config.orders_per_second, placements_per_minute=config.orders_per_minute,
            placements_per_day=config.orders_per_day, quote_per_second=config.quotes_per_second,
            historical_per_second=config.historical_per_second, other_per_second=config.other_per_second,
            enabled=config.rate_limits))
        self.broker = Broker(self.market, self.accounts, self.faults)
        self.margin_calc = MarginCalculator(self.market, self.broker.funds)
        self.ticker = TickerHub(self.market, self.accounts, self.faults, config.tick_rate)
        if config.stamp_token is not None:
            if config.stamp_token not in self.market.by_token:
                raise SystemExit(f"--stamp-token {config.stamp_token}: no such instrument")
            self.ticker.stamp_index = self.market.by_token[config.stamp_token].index
        self.postbacks = PostbackSender(config.postback_url)
        self.broker.listeners += [self.ticker.on_order_update, self.postbacks.on_order_update]
        self.gtt = GttBook(self.market, self.broker, self.accounts)
        market_hours.start(config.market_hours)
        self._market_task: asyncio.Task | None = None

    async def _run_market(self) -> None:
        step_s = self.market.step_s
        while True:
            await asyncio.sleep(step_s)
            self.market.step()
            self.broker.match_all()
            self.after_market_step()

    def after_market_step(self) -> None:
        """After the resting orders are matched: AMO orders go out at the open, GTTs fire."""
        market_hours.release_at_open(self.broker)
        self.gtt.check()

    async def _on_startup(self, app) -> None:
        await self.postbacks.start()
        self._market_task = asyncio.create_task(self._run_market())

    async def _on_shutdown(self, app) -> None:
        if self._market_task:
            self._market_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._market_task
        self.ticker.drop_all()
        await self.postbacks.stop()

    def app(self) -> web.Application:
        kite = KiteRoutes(self)
        app = web.Application(middlewares=[kite.middleware], client_max_size=1 << 20)
        app.router.add_get("/ws", self.ticker.handle)
        AdminRoutes(self).add_to(app)
        kite.add_to(app)
        GttRoutes(self.gtt).add_to(app, kite)
        kite.register(app, "GET", "/connect/login", LoginPage(self.accounts).handle, PAGE)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app


async def serve(config: SimConfig, announce=print) -> None:
    """Run until cancelled; `announce` gets the one line saying where it listens."""
    sim = Simulator(config)
    runner = web.AppRunner(sim.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    announce(f"paper broker listening on http://{config.host}:{port} (ticker ws://{config.host}:{port}/ws)")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
