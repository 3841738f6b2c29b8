"""The `stream` process: leases accounts, keeps their ticker pool subscribed, fans ticks out.

    LeaseKeeper ──gained/lost──▶ TickerPool ──frames──▶ FramePump ─▶ TickBatcher ─▶ RedisPublisher
        ▲                            ▲  order messages ──▶ app.orders.reconciliation.apply_broker_update
        │ accounts with a live       │  dead sessions ──▶ app.kite_session.state.mark_expired
        │ Kite session (database)    │ subscriptions (database; `stream:control` wakes a reload)

Several stream processes share the work: each holds a fair share of the accounts
(leases in Redis) and subscribes the instruments assigned to its accounts, so no
instrument is streamed twice. Assignment is deterministic from the sorted list
of leased accounts, so every process computes the same split without talking.

Kite ends every session around 06:00 IST. An account whose session died is dropped
within a second or two and its instruments go to the accounts left: the pool sees the
broker refuse the token (this process marks the session expired, and gives up the
lease), or another process marked it and `session:{id}` on `stream:control` makes the
lease keeper look again at once. A login announces itself the same way; the account is
leased again and the pool hands it a fair share back.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from prometheus_client import start_http_server
from sqlalchemy import select

from app import greeks
from app.accounts import credentials
from app.core.config import Settings, get_settings
from app.core.db import new_session
from app.kite_session.state import ACTIVE, mark_expired, state_of, streaming_account_ids
from app.market.instruments import registry
from app.models import Account, Subscription
from app.core.redis_client import get_redis
from app.market.subscriptions import CONTROL_CHANNEL
from workers.stream import frames, metrics
from workers.stream.batcher import TickBatcher
from workers.stream.enrich import GreeksEnricher
from workers.stream.instruments import InstrumentBook, OptionMeta, UnderlyingTokens
from workers.stream.leases import LEASE_KEY, AccountLeases, LeaseKeeper
from workers.stream.pool import TickerPool
from workers.stream.publisher import PublishStage, RedisPublisher
from workers.stream.pump import FramePump
from workers.stream.connection_plan import CapacityExceeded

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "stream:heartbeat:{holder}"
HEARTBEAT_TTL_S = 10
RELOAD_EVERY_S = 5.0  # subscriptions are re-read this often even without a wake-up
SESSION_MESSAGE_PREFIX = b"session:"  # app.kite_session.announce: a session died or a login happened


def build_book() -> InstrumentBook:
    """Option metadata and underlying tokens for the Greeks, from the instrument registry."""
    instruments = registry()  # grouped by underlying once per load: no pass over the dump per name
    options: dict[int, OptionMeta] = {}
    underlyings: dict[str, UnderlyingTokens] = {}
    for name in instruments.option_underlyings():
        found = instruments.underlying(name)
        for o in found.options:
            options[o.instrument_token] = OptionMeta(o.instrument_token, name, o.strike, o.expiry,
                                                     o.instrument_type == "CE", o.lot_size, o.tradingsymbol)
        underlyings[name] = UnderlyingTokens(
            name, index_token=found.index.instrument_token if found.index else None,
            future_tokens=tuple(f.instrument_token for f in found.futures),
            future_expiries=tuple(f.expiry for f in found.futures))
    return InstrumentBook(options, underlyings)


def read_subscriptions() -> dict[int, tuple[str, str | None]]:
    """Every subscription as token → (mode, pinned account or None). Plain columns, no ORM objects:
    the stream re-reads all of them every few seconds, 27,000 at Kite's limits for three accounts."""
    with new_session() as session:
        return {token: (mode.lower(), account) for token, mode, account in session.execute(
            select(Subscription.instrument_token, Subscription.requested_mode, Subscription.account_id))}


def assign(tokens: dict[int, tuple[str, str | None]], leased: list[str], mine: set[str]) -> dict[int, str]:
    """The subscriptions (token → mode) this process streams.

    `tokens` maps token → (mode, pinned account or None); a token pinned to a
    leased account goes to that account, the others round-robin over the sorted
    leased accounts.
    """
    if not leased:
        return {}
    leased = sorted(leased)
    held = set(leased)
    desired: dict[int, str] = {}
    unpinned = sorted(t for t, (_, pin) in tokens.items() if pin not in held)
    for i, token in enumerate(unpinned):
        if leased[i % len(leased)] in mine:
            desired[token] = tokens[token][0]
    for token, (mode, pin) in tokens.items():
        if pin in held and pin in mine:
            desired[token] = mode
    return desired


class StreamService:
    def __init__(self, settings: Settings | None = None, holder_id: str | None = None,
                 metrics_port: int | None = None) -> None:
        self.settings = settings or get_settings()
        self.holder_id = holder_id or f"{socket.gethostname()}:{os.getpid()}"
        self.metrics_port = metrics_port
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._book_version: tuple | None = None
        self._unassigned_reported = 0
        self.publisher = RedisPublisher.from_url(self.settings.redis_url)
        self.publish_stage = PublishStage(self.publisher)
        self.batcher = TickBatcher(
            self.publish_stage, build_book(),
            GreeksEnricher(self.settings.option_greeks_interest_rate, self.settings.option_greeks_dividend_yield),
            window_ms=self.settings.tick_batch_window_ms, max_size=self.settings.tick_batch_max_size)
        self.pool = TickerPool(self.settings.kite_ws_root, max_ws_connections=self.settings.max_ws_connections,
                               max_instruments_per_ws=self.settings.max_instruments_per_ws,
                               on_order_update=self._on_order_update, on_session_dead=self._on_session_dead)
        self.pump = FramePump(self.pool.frames, self.batcher)
        self.leases = AccountLeases(get_redis(), holder_id=self.holder_id)
        self.keeper = LeaseKeeper(self.leases, streaming_account_ids, self._gained, self._lost,
                                  on_changed=self._reload.set)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "StreamService":
        started = time.perf_counter()
        greeks.warm_up()  # compile (or load from cache) every kernel before the first tick
        frames.warm_up()
        log.info("greeks kernels ready", extra={"seconds": round(time.perf_counter() - started, 3)})
        if self.metrics_port:
            try:
                start_http_server(self.metrics_port, addr=self.settings.stream_metrics_host)
            except OSError as exc:  # a second stream on one host: metrics from the first one only
                log.warning("stream metrics port unavailable", extra={"port": self.metrics_port, "error": str(exc)})
        self.pool.start()
        self.pump.start()
        self.keeper.start()
        threading.Thread(target=self._listen_for_changes, name="stream-control", daemon=True).start()
        return self

    def run_forever(self) -> None:
        while not self._stop.is_set():
            self._reload.wait(RELOAD_EVERY_S)
            self._reload.clear()
            if self._stop.is_set():
                break
            self.apply_subscriptions()
            self._heartbeat()

    def request_stop(self) -> None:
        """Ask run_forever to return (safe from a signal handler)."""
        self._stop.set()
        self._reload.set()

    def stop(self) -> None:
        self._stop.set()
        self._reload.set()
        self.keeper.stop(release=True)
        self.pump.stop()
        self.publish_stage.stop()
        self.pool.stop()
        try:
            get_redis().delete(HEARTBEAT_KEY.format(holder=self.holder_id))
        except Exception:
            pass

    # ---- accounts ------------------------------------------------------------------------------
    def _gained(self, account_id: str) -> None:
        creds = self._live_credentials(account_id)
        if creds is None:  # its session ended since the accounts were listed
            self.keeper.drop(account_id)
            return
        self.pool.add_account(account_id, creds.api_key, creds.access_token)
        log.info("account leased", extra={"account_id": account_id, "holder": self.holder_id})

    def _lost(self, account_id: str) -> None:
        self.pool.remove_account(account_id)
        log.info("account lease lost", extra={"account_id": account_id, "holder": self.holder_id})

    def _on_session_dead(self, account_id: str, access_token: str, reason: str) -> None:
        """The broker refused the token a connection of the account used (pool callback thread)."""
        try:
            if not mark_expired(account_id, reason, "stream", access_token=access_token):
                newer = self._live_credentials(account_id)
                if newer is not None and newer.access_token != access_token:
                    # A login replaced the token meanwhile: carry on with the new one (if the
                    # account is still ours: a lease given up meanwhile is not streamed).
                    self.keeper.if_held(account_id, lambda: self.pool.add_account(
                        account_id, newer.api_key, newer.access_token))
                    log.info("account's refused token was replaced; reconnecting with the new one",
                             extra={"account_id": account_id})
                    return
        except Exception:  # no database: still no reconnecting with a dead token
            log.warning("dead session not recorded", exc_info=True, extra={"account_id": account_id})
        log.warning("account's Kite session is dead; its instruments move to the other accounts",
                    extra={"account_id": account_id, "reason": reason[:200]})
        self.keeper.drop(account_id)  # gives up the lease: _lost takes it out of the pool

    @staticmethod
    def _live_credentials(account_id: str):
        """The account's credentials while its session is live, else None."""
        with new_session() as session:
            account = session.get(Account, account_id)
            if account is None or not account.active or state_of(account) != ACTIVE:
                return None
            return credentials(account)

    @staticmethod
    def _on_order_update(account_id: str, order: dict) -> None:
        from app.orders.reconciliation import apply_broker_update

        apply_broker_update(account_id, order, source="websocket")

    # ---- subscriptions -------------------------------------------------------------------------
    def _leased_accounts(self) -> list[str]:
        prefix = LEASE_KEY.format(account_id="")
        keys = get_redis().scan_iter(f"{prefix}*", count=500)
        return [k.decode()[len(prefix):] for k in keys]

    def apply_subscriptions(self) -> None:
        try:
            self._refresh_book()
            tokens = read_subscriptions()
            leased = self._leased_accounts()
            desired = assign(tokens, leased, set(self.pool.accounts()))
            left_out = 0
            try:
                self.pool.set_subscriptions(desired)
            except CapacityExceeded as exc:  # the API refuses this; only a lost account gets here
                fits = dict(sorted(desired.items())[: exc.capacity])
                left_out = len(desired) - len(fits)
                self.pool.set_subscriptions(fits)
            # With no account leased anywhere nobody streams anything: every process says so.
            self._report_unassigned(len(tokens) if not leased else self.pool.unassigned() + left_out)
        except Exception:  # a database or Redis outage: keep streaming what we have, retry soon
            log.warning("subscriptions not refreshed", exc_info=True)

    def _report_unassigned(self, count: int) -> None:
        metrics.INSTRUMENTS_UNASSIGNED.set(count)
        if count and count != self._unassigned_reported:
            log.error("%d subscribed instruments get no ticks: no streaming account has room for them "
                      "(a dead Kite session? log the account in again, or add an account)", count,
                      extra={"unassigned": count, "accounts": self.pool.accounts(),
                             "capacity": self.pool.capacity().total})
        elif not count and self._unassigned_reported:
            log.info("every subscribed instrument has an account again")
        self._unassigned_reported = count

    def _refresh_book(self) -> None:
        instruments = registry()
        instruments.loaded_at  # reloads the registry if the table changed (without copying 100,000 entries)
        version = instruments.version
        if version != self._book_version:
            self.batcher.instruments = build_book()
            self._book_version = version

    def _listen_for_changes(self) -> None:
        """`stream:control` wakes a reload within milliseconds; reconnects after Redis outages."""
        while not self._stop.is_set():
            try:
                pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CONTROL_CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message:
                        if _is_session_message(message.get("data")):
                            self.keeper.wake()  # an account died or logged in: look at the leases now
                        self._reload.set()
            except Exception:
                log.warning("control channel lost; retrying", exc_info=True)
                self._stop.wait(1.0)

    def _heartbeat(self) -> None:
        status = {"holder": self.holder_id, "accounts": self.pool.accounts(),
                  "subscriptions": len(self.pool.subscriptions()), "per_account": self.pool.load_by_account(),
                  "unassigned": self._unassigned_reported, "at": time.time()}
        try:
            get_redis().set(HEARTBEAT_KEY.format(holder=self.holder_id), json.dumps(status), ex=HEARTBEAT_TTL_S)
        except Exception:
            log.warning("heartbeat not written", exc_info=True)


def _is_session_message(data) -> bool:
    if isinstance(data, str):
        data = data.encode()
    return isinstance(data, bytes) and data.startswith(SESSION_MESSAGE_PREFIX)
