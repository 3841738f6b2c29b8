"""A pool of ``kiteconnect.KiteTicker`` connections over several accounts.

Twisted rules this module follows (KiteTicker runs on Twisted's reactor, one per process):
- one reactor per process, started once in a daemon thread and never stopped
  (``KiteTicker.stop()`` is never called: the reactor cannot restart);
- every ``connect``/``subscribe``/``set_mode``/``close`` runs on the reactor
  thread (``reactor.callFromThread``); public methods of ``TickerPool`` are
  thread-safe and only post work there;
- callbacks arrive on the reactor thread, must never raise (an exception drops
  the socket) and never block: raw frames go onto ``TickerPool.frames``
  (``on_ticks`` stays unset, so KiteTicker's slow parser never runs) and order
  updates to a dispatcher thread.

Liveness: KiteTicker never pings, so a watchdog on the reactor aborts a
connection that delivered nothing (not even a heartbeat) for
``silence_timeout_s``; KiteTicker's factory then reconnects with exponential
backoff, and ``on_connect`` resubscribes everything the plan gives that
connection. When the factory gives up (``on_noreconnect``) the pool starts a
fresh attempt itself, with its own capped exponential backoff.

A dead session is not retried: when the broker ends a socket for its access
token (close code 1008) or refuses the handshake with HTTP 403, that
connection stops reconnecting and ``on_session_dead(account_id, access_token,
reason)`` is called once per token; its owner then gives the account a newer
token (``add_account``) or drops it (``remove_account``). Without that
callback the pool keeps retrying, as for any other failure.
"""
from __future__ import annotations

import json
import logging
import queue
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from kiteconnect import KiteTicker
from twisted.internet import reactor, task

from workers.stream import metrics
from workers.stream.connection_plan import Capacity, Slot, SubscriptionPlan

log = logging.getLogger(__name__)

OrderUpdateCallback = Callable[[str, dict], None]
SessionDeadCallback = Callable[[str, str, str], None]  # account_id, the refused access token, reason

SESSION_ENDED_CLOSE_CODE = 1008  # policy violation: how the paper broker ends a dead session's socket
ABNORMAL_CLOSE_CODE = 1006  # autobahn's code for a refused handshake, the HTTP status in its reason
_FORBIDDEN = re.compile(r"\b403\b")


def is_session_refusal(code, reason) -> bool:
    """The broker ended or refused the socket because of its access token (not a network fault)."""
    if code == SESSION_ENDED_CLOSE_CODE:
        return True
    return code == ABNORMAL_CLOSE_CODE and bool(_FORBIDDEN.search(str(reason or "")))

_reactor_lock = threading.Lock()


def ensure_reactor_running(timeout: float = 10.0) -> None:
    """Start Twisted's reactor in a daemon thread, once per process (what
    ``KiteTicker.connect(threaded=True)`` does, without racing a connect)."""
    with _reactor_lock:
        if reactor.running:
            return
        started = threading.Event()
        reactor.callWhenRunning(started.set)
        threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                         name="twisted-reactor", daemon=True).start()
        if not started.wait(timeout):
            raise RuntimeError("Twisted reactor did not start")


@dataclass
class AccountCredentials:
    account_id: str
    api_key: str
    access_token: str


@dataclass
class PooledConnection:
    """One KiteTicker and what the broker should and does have on it.
    Touched only on the reactor thread."""

    slot: Slot
    ticker: KiteTicker
    creds: "AccountCredentials"  # what it connects with: other credentials mean a new connection
    desired: dict[int, str] = field(default_factory=dict)  # token -> mode, from the plan
    sent: dict[int, str] = field(default_factory=dict)  # what this socket was told since it opened
    connected: bool = False
    closing: bool = False
    last_message_at: float = 0.0  # monotonic
    connects: int = 0
    restarts: int = 0  # pool-driven restarts since the last good connect
    restart_at: float | None = None  # pending pool-driven restart (monotonic)
    refused: bool = False  # the broker refused its token: left closed until new credentials come

    @property
    def account_id(self) -> str:
        return self.slot[0]

    @property
    def access_token(self) -> str:
        return self.creds.access_token


class TickerPool:
    def __init__(self, ws_root: str | None = None, *, max_ws_connections: int = 3,
                 max_instruments_per_ws: int = 3000, on_order_update: OrderUpdateCallback | None = None,
                 on_session_dead: SessionDeadCallback | None = None,
                 frame_queue: "queue.Queue[tuple[str, bytes, float]] | None" = None,
                 silence_timeout_s: float = 5.0, watchdog_interval_s: float = 1.0,
                 reconnect_max_delay_s: int = 30, reconnect_max_tries: int = 50,
                 restart_backoff_s: float = 1.0, restart_backoff_max_s: float = 60.0,
                 connect_timeout_s: int = 10) -> None:
        self.ws_root = ws_root
        self.frames = frame_queue if frame_queue is not None else queue.Queue(maxsize=20_000)
        self.on_order_update = on_order_update
        self.on_session_dead = on_session_dead
        self.silence_timeout_s = silence_timeout_s
        self.watchdog_interval_s = watchdog_interval_s
        self.reconnect_max_delay_s = reconnect_max_delay_s
        self.reconnect_max_tries = reconnect_max_tries
        self.restart_backoff_s = restart_backoff_s
        self.restart_backoff_max_s = restart_backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()  # guards _plan and _accounts
        self._plan = SubscriptionPlan(max_ws_connections, max_instruments_per_ws)
        self._accounts: dict[str, AccountCredentials] = {}
        self._conns: dict[Slot, PooledConnection] = {}  # reactor thread only
        self._refused_tokens: set[tuple[str, str]] = set()  # (account, token) reported dead; reactor only
        # Callbacks that may block (database) run on their own thread, never on the reactor.
        self._callbacks: "queue.Queue[tuple[Callable, tuple] | None]" = queue.Queue()
        self._watchdog: task.LoopingCall | None = None
        self._callback_thread: threading.Thread | None = None
        self._started = False

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "TickerPool":
        ensure_reactor_running()
        self._started = True
        self._callback_thread = threading.Thread(target=self._dispatch_callbacks, name="stream-pool-callbacks",
                                                 daemon=True)
        self._callback_thread.start()
        reactor.callFromThread(self._start_watchdog)
        self._post_reconcile()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (the reactor keeps running for others)."""
        done = threading.Event()

        def shutdown() -> None:
            if self._watchdog is not None and self._watchdog.running:
                self._watchdog.stop()
            for conn in list(self._conns.values()):
                self._close(conn)
            self._conns.clear()
            done.set()

        if self._started:
            reactor.callFromThread(shutdown)
            done.wait(timeout)
            self._callbacks.put(None)
            self._started = False

    # -- accounts and subscriptions (any thread) ---------------------------
    def add_account(self, account_id: str, api_key: str, access_token: str) -> None:
        """Add an account (it takes a fair share of the instruments from the others), or replace
        its credentials (its connections restart)."""
        creds = AccountCredentials(account_id, api_key, access_token)
        with self._lock:
            old = self._accounts.get(account_id)
            self._accounts[account_id] = creds
            self._plan.set_accounts(list(self._accounts))
            if old is None:
                self._plan.rebalance()
        if self._started:
            reactor.callFromThread(self._forget_refusals, account_id)
        self._post_reconcile()

    def remove_account(self, account_id: str) -> None:
        """Stop using an account; its instruments move to the other accounts."""
        with self._lock:
            self._accounts.pop(account_id, None)
            self._plan.set_accounts(list(self._accounts))
        self._post_reconcile()

    def accounts(self) -> list[str]:
        with self._lock:
            return list(self._accounts)

    def set_subscriptions(self, desired: Mapping[int, str]) -> None:
        """Make ``desired`` (token -> ltp|quote|full) the whole subscription
        set. Raises CapacityExceeded when it does not fit."""
        with self._lock:
            if desired == self._plan.desired:  # the periodic re-read found no change (27,000 at market scale)
                return
            self._plan.set_desired(desired)
        self._post_reconcile()

    def subscribe(self, tokens: Iterable[int], mode: str = "quote") -> None:
        with self._lock:
            self._plan.subscribe(tokens, mode)
        self._post_reconcile()

    def unsubscribe(self, tokens: Iterable[int]) -> None:
        with self._lock:
            self._plan.unsubscribe(tokens)
        self._post_reconcile()

    def set_mode(self, tokens: Iterable[int], mode: str) -> None:
        with self._lock:
            self._plan.set_mode(tokens, mode)
        self._post_reconcile()

    def capacity(self) -> Capacity:
        with self._lock:
            return self._plan.capacity()

    def unassigned(self) -> int:
        """Subscribed instruments no account has room for (they wait for capacity)."""
        with self._lock:
            return len(self._plan.unassigned())

    def load_by_account(self) -> dict[str, int]:
        """Instruments each account carries, by the plan."""
        with self._lock:
            return _per_account(self._plan)

    def subscriptions(self) -> dict[int, str]:
        with self._lock:
            return dict(self._plan.desired)

    def status(self, timeout: float = 2.0) -> dict:
        """Snapshot of every connection, taken on the reactor thread."""
        result: dict = {}
        done = threading.Event()

        def collect() -> None:
            now = time.monotonic()
            result["connections"] = [
                {"account_id": c.slot[0], "index": c.slot[1], "connected": c.connected, "refused": c.refused,
                 "instruments": len(c.desired), "subscribed": len(c.sent), "connects": c.connects,
                 "last_message_age_s": round(now - c.last_message_at, 3) if c.last_message_at else None}
                for c in sorted(self._conns.values(), key=lambda c: c.slot)
            ]
            done.set()

        reactor.callFromThread(collect)
        done.wait(timeout)
        with self._lock:
            result["capacity"] = self._plan.capacity().__dict__
            result["unassigned"] = len(self._plan.unassigned())
        return result

    # -- reactor thread ----------------------------------------------------
    def _post_reconcile(self) -> None:
        if self._started:
            reactor.callFromThread(self._reconcile)

    def _reconcile(self) -> None:
        with self._lock:
            plan = {slot: dict(tokens) for slot, tokens in self._plan.slots.items() if tokens}
            creds = dict(self._accounts)
        # Gone from the plan, or opened with credentials the account no longer has.
        for slot in [s for s, c in self._conns.items() if s not in plan or c.creds != creds.get(s[0])]:
            self._close(self._conns.pop(slot))
        for slot, tokens in plan.items():
            conn = self._conns.get(slot)
            if conn is None:
                conn = self._open(slot, creds[slot[0]])
            conn.desired = tokens
            if conn.connected:
                self._sync(conn)
        self._export_gauges()

    def _open(self, slot: Slot, creds: AccountCredentials) -> PooledConnection:
        ticker = KiteTicker(creds.api_key, creds.access_token, root=self.ws_root,
                            reconnect_max_delay=self.reconnect_max_delay_s,
                            reconnect_max_tries=self.reconnect_max_tries,
                            connect_timeout=self.connect_timeout_s)
        conn = PooledConnection(slot=slot, ticker=ticker, creds=creds)
        ticker.on_connect = lambda ws, response: self._guard(self._on_connect, conn)
        ticker.on_message = lambda ws, payload, is_binary: self._guard(self._on_message, conn, payload, is_binary)
        ticker.on_close = lambda ws, code, reason: self._guard(self._on_close, conn, code, reason)
        ticker.on_error = lambda ws, code, reason: self._guard(self._on_error, conn, code, reason)
        ticker.on_noreconnect = lambda ws: self._guard(self._on_noreconnect, conn)
        self._conns[slot] = conn
        ticker.connect()  # reactor already running: only schedules the connection
        return conn

    def _close(self, conn: PooledConnection) -> None:
        conn.closing = True
        conn.connected = False
        ws = conn.ticker.ws
        try:
            conn.ticker.close()  # stopTrying + close frame; never stop(): it ends the reactor
        except Exception:
            log.debug("closing %s", conn.slot, exc_info=True)
        if ws is not None:
            # A server that ignores the close frame must not keep the socket.
            reactor.callLater(2.0, self._guard, ws.dropConnection, True)

    def _forget_refusals(self, account_id: str) -> None:
        """The account was (re-)added: a token refused before is tried once more (the next
        reconcile reopens the closed connections)."""
        for slot in [s for s, c in self._conns.items() if s[0] == account_id and c.refused]:
            self._close(self._conns.pop(slot))
        self._refused_tokens = {key for key in self._refused_tokens if key[0] != account_id}

    def _sync(self, conn: PooledConnection) -> None:
        """Tell the broker the difference between what this socket has and what it should have."""
        kt, desired, sent = conn.ticker, conn.desired, conn.sent
        gone = [t for t in sent if t not in desired]
        by_mode: dict[str, list[int]] = {}
        for token, mode in desired.items():
            if sent.get(token) != mode:
                by_mode.setdefault(mode, []).append(token)
        try:
            if gone:
                kt.unsubscribe(gone)
            for mode, tokens in by_mode.items():
                new = [t for t in tokens if t not in sent]
                if new:
                    kt.subscribe(new)
                kt.set_mode(mode, tokens)  # also for quote: explicit beats the server default
        except Exception:
            # KiteTicker closes the socket on a failed send; on_connect will resend everything.
            log.warning("subscription sync failed on %s", conn.slot, exc_info=True)
            return
        conn.sent = dict(desired)

    def _on_connect(self, conn: PooledConnection) -> None:
        if conn.closing:
            # Closed while still connecting (stopTrying cannot stop a first attempt): close it now
            # that it is open, or the broker keeps counting it against the key's 3 connections.
            reactor.callLater(0, self._guard, self._close, conn)
            return
        conn.connected = True
        conn.connects += 1
        conn.restarts = 0
        conn.restart_at = None
        conn.last_message_at = time.monotonic()
        conn.sent = {}
        # KiteTicker resubscribes its own record after on_connect; make that
        # record exactly our set, so tokens dropped while offline stay dropped.
        conn.ticker.subscribed_tokens = {}
        self._sync(conn)
        log.info("ticker %s connected (%d instruments, connect #%d)", conn.slot, len(conn.desired), conn.connects)
        self._export_gauges()

    def _on_message(self, conn: PooledConnection, payload: bytes, is_binary: bool) -> None:
        conn.last_message_at = time.monotonic()
        if is_binary:
            metrics.FRAMES_RECEIVED.labels(account_id=conn.account_id).inc()
            if len(payload) > 4:  # shorter frames are heartbeats (KiteTicker ignores <= 4 too)
                try:
                    self.frames.put_nowait((conn.account_id, payload, time.time()))
                except queue.Full:
                    metrics.TICKS_DROPPED.labels(reason="queue_full").inc()
            return
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "order" and message.get("data"):
            metrics.ORDER_UPDATES.labels(account_id=conn.account_id).inc()
            if self.on_order_update is not None:
                self._callbacks.put((self.on_order_update, (conn.account_id, message["data"])))

    def _on_close(self, conn: PooledConnection, code, reason) -> None:
        conn.connected = False
        if not conn.closing:
            log.warning("ticker %s closed: %s %s", conn.slot, code, reason)
            if self.on_session_dead is not None and is_session_refusal(code, reason):
                self._session_refused(conn, str(reason or f"closed with code {code}"))
        self._export_gauges()

    def _session_refused(self, conn: PooledConnection, reason: str) -> None:
        # Retrying a dead token only collects more 403s; the owner decides what replaces it.
        conn.refused = True
        conn.restart_at = None
        conn.ticker.stop_retry()
        key = (conn.account_id, conn.access_token)
        if key in self._refused_tokens:
            return  # another connection of the same token already reported it
        self._refused_tokens.add(key)
        log.warning("ticker %s: the broker refused the account's access token (%s)", conn.slot, reason)
        self._callbacks.put((self.on_session_dead, (conn.account_id, conn.access_token, reason)))

    def _on_error(self, conn: PooledConnection, code, reason) -> None:
        if not conn.closing:
            log.warning("ticker %s error: %s %s", conn.slot, code, reason)

    def _on_noreconnect(self, conn: PooledConnection) -> None:
        if not conn.closing and not conn.refused:
            log.error("ticker %s: KiteTicker gave up reconnecting; the pool takes over", conn.slot)
            self._schedule_restart(conn)

    def _schedule_restart(self, conn: PooledConnection) -> None:
        if conn.restart_at is not None:
            return
        delay = min(self.restart_backoff_max_s, self.restart_backoff_s * (2 ** conn.restarts))
        conn.restart_at = time.monotonic() + delay * random.uniform(0.8, 1.2)
        conn.restarts += 1

    def _start_watchdog(self) -> None:
        if self._watchdog is None or not self._watchdog.running:
            self._watchdog = task.LoopingCall(self._guard, self._watch)
            self._watchdog.start(self.watchdog_interval_s, now=False)

    def _watch(self) -> None:
        now = time.monotonic()
        for conn in list(self._conns.values()):
            if conn.closing or conn.refused:
                continue
            if conn.connected and now - conn.last_message_at > self.silence_timeout_s:
                log.warning("ticker %s silent for %.1fs: reconnecting", conn.slot, now - conn.last_message_at)
                metrics.POOL_RECONNECTS.labels(account_id=conn.account_id, reason="silence").inc()
                conn.connected = False
                if conn.ticker.ws is not None:
                    conn.ticker.ws.dropConnection(abort=True)  # the factory then retries with backoff
                continue
            if not conn.connected and _factory_gave_up(conn.ticker):
                self._schedule_restart(conn)  # also when on_noreconnect never came (debug=True)
            if conn.restart_at is not None and now >= conn.restart_at and not conn.connected:
                log.warning("ticker %s: restarting (attempt %d)", conn.slot, conn.restarts)
                metrics.POOL_RECONNECTS.labels(account_id=conn.account_id, reason="gave_up").inc()
                conn.restart_at = None
                try:
                    conn.ticker.stop_retry()
                except Exception:
                    pass
                conn.ticker.connect()  # a fresh factory with a fresh retry budget
        self._export_gauges()

    def _export_gauges(self) -> None:
        counts: dict[tuple[str, str], int] = {}
        for account in self.accounts():
            counts[(account, "connected")] = 0
            counts[(account, "connecting")] = 0
        for conn in self._conns.values():
            key = (conn.account_id, "connected" if conn.connected else "connecting")
            counts[key] = counts.get(key, 0) + 1
        for (account, state), n in counts.items():
            metrics.POOL_CONNECTIONS.labels(account_id=account, state=state).set(n)
        for account, n in self.load_by_account().items():
            metrics.POOL_SUBSCRIBED.labels(account_id=account).set(n)

    def _guard(self, fn, *args) -> None:
        # An exception escaping a KiteTicker callback would drop the socket.
        try:
            fn(*args)
        except Exception:
            log.exception("stream pool callback %s failed", getattr(fn, "__name__", fn))

    # -- order updates and dead sessions (own thread: callbacks may touch the database) ----
    def _dispatch_callbacks(self) -> None:
        while True:
            item = self._callbacks.get()
            if item is None:
                return
            callback, args = item
            try:
                callback(*args)
            except Exception:
                log.exception("%s failed for %s", getattr(callback, "__name__", callback), args[0])


def _per_account(plan: SubscriptionPlan) -> dict[str, int]:
    totals = {account: 0 for account in plan.accounts}
    for (account, _), tokens in plan.slots.items():
        totals[account] = totals.get(account, 0) + len(tokens)
    return totals


def _factory_gave_up(ticker: KiteTicker) -> bool:
    factory = getattr(ticker, "factory", None)
    if factory is None:
        return False
    exhausted = factory.maxRetries is not None and factory.retries > factory.maxRetries
    return exhausted or not factory.continueTrying
