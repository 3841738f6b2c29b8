"""Kite's ticker WebSocket (`/ws`): auth by query string, subscribe/mode messages,
binary tick frames, heartbeats and text order updates.

One sender task per connection writes everything that connection receives, so
frames never interleave. Each subscription earns credit at `tick_rate × w` ticks
per second, w being the instrument's liquidity weight (sim/liquidity.py: mean 1
over the universe, all 1 in the small one), and gets a tick whenever its credit
reaches 1; new subscriptions start staggered, so equal weights take turns as
round-robin would.
The server never sends WebSocket pings or pongs (an unsolicited pong makes the
official client kill its own connection).
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from . import packets
from .accounts import Account
from .errors import KiteError

MAX_TOKENS_PER_CONNECTION = 3000
MAX_CONNECTIONS_PER_KEY = 3
MAX_PACKETS_PER_SEND = 4096   # bounds one frame's size; a frame may repeat instruments at high rates
HEARTBEAT_EVERY_S = 1.0


class TickerConnection:
    def __init__(self, hub: "TickerHub", ws: web.WebSocketResponse, api_key: str, transport,
                 access_token: str = ""):
        self.hub = hub
        self.ws = ws
        self.api_key = api_key
        self.transport = transport
        self.access_token = access_token
        self.modes: dict[int, int] = {}            # instrument index -> mode, in subscription order
        self.sub_indices = np.empty(0, np.int64)
        self.sub_kinds = np.empty(0, np.int8)
        self.sub_rates = np.empty(0)               # ticks/s per unit of tick_rate: the liquidity weights
        self.credit = np.empty(0)                  # ticks owed to each subscription
        self.fresh: list[int] = []                 # just subscribed or re-moded: send at once
        self.outbox: deque[str] = deque()
        self.wakeup = asyncio.Event()
        self.ticks_sent = 0

    # ---- client messages ----------------------------------------------------------------
    def handle_text(self, text: str) -> None:
        try:
            message = json.loads(text)
            action, value = message["a"], message["v"]
        except (ValueError, KeyError, TypeError):
            self.send_error("Invalid message.")
            return
        market = self.hub.market
        if action == "subscribe":
            for token in self._tokens(value):
                inst = market.by_token.get(token)
                if inst is None or inst.index in self.modes:
                    continue
                if len(self.modes) >= MAX_TOKENS_PER_CONNECTION:
                    self.send_error(f"Maximum {MAX_TOKENS_PER_CONNECTION} instruments allowed per connection; "
                                    f"the rest were not subscribed.")
                    break
                self.modes[inst.index] = packets.QUOTE
                self.fresh.append(inst.index)
        elif action == "unsubscribe":
            for token in self._tokens(value):
                inst = market.by_token.get(token)
                if inst is not None:
                    self.modes.pop(inst.index, None)
        elif action == "mode":
            try:
                mode = packets.MODES[value[0]]
                tokens = self._tokens(value[1])
            except (KeyError, IndexError, TypeError):
                self.send_error("Invalid mode message.")
                return
            for token in tokens:
                inst = market.by_token.get(token)
                if inst is not None and inst.index in self.modes:
                    self.modes[inst.index] = mode
                    self.fresh.append(inst.index)
        else:
            self.send_error(f"Unknown action `{action}`.")
            return
        self._rebuild()
        self.wakeup.set()

    @staticmethod
    def _tokens(value) -> list[int]:
        if not isinstance(value, list):
            return []
        return [int(t) for t in value if isinstance(t, (int, float)) or (isinstance(t, str) and t.isdigit())]

    def _rebuild(self) -> None:
        indices = np.fromiter(self.modes.keys(), np.int64, len(self.modes))
        modes = np.fromiter(self.modes.values(), np.int8, len(self.modes))
        kept = dict(zip(self.sub_indices.tolist(), self.credit.tolist()))
        new = np.array([i not in kept for i in indices.tolist()], bool)
        credit = np.array([kept.get(i, 0.0) for i in indices.tolist()])
        # the m new subscriptions start 1/m of a tick apart: with equal weights they take turns
        m = int(new.sum())
        credit[new] = 1.0 - np.arange(1, m + 1) / max(m, 1)
        self.sub_indices = indices
        self.sub_kinds = packets.packet_kinds(modes, self.hub.market.is_index[indices])
        self.sub_rates = self.hub.market.liquidity[indices]
        self.credit = credit

    def send_error(self, message: str) -> None:
        self.outbox.append(json.dumps({"type": "error", "data": message}))
        self.wakeup.set()

    def send_order(self, data: dict) -> None:
        self.outbox.append(json.dumps({"type": "order", "data": data}))
        self.wakeup.set()

    # ---- sending ------------------------------------------------------------------------
    def _due(self, rate: float, elapsed: float) -> tuple[np.ndarray, np.ndarray]:
        """Add `elapsed` seconds of credit (at most a second's worth, plus one tick) and take the ticks
        owed: (instrument indices, table kinds), an instrument repeated when it owes several."""
        per_second = rate * self.sub_rates
        self.credit = np.minimum(self.credit + per_second * elapsed, per_second + 1.0)
        owed = np.floor(self.credit)
        due = np.flatnonzero(owed)
        counts = owed[due].astype(np.int64)
        self.credit[due] -= counts
        return np.repeat(self.sub_indices[due], counts), np.repeat(self.sub_kinds[due], counts)

    async def run_sender(self) -> None:
        hub, ws = self.hub, self.ws
        last = time.monotonic()
        last_sent = last
        while not ws.closed:
            rate = hub.tick_rate
            fastest = rate * (float(self.sub_rates.max()) if len(self.sub_rates) else 1.0)
            interval = min(max(1.0 / fastest if fastest > 0 else 1.0, 0.01), 1.0)
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
            self.wakeup.clear()
            faults = hub.faults.settings
            now = time.monotonic()
            elapsed, last = now - last, now
            if faults.silence_ws:   # no credit accrues meanwhile (`last` moves on), as when paused
                continue
            while self.outbox:
                await ws.send_str(self.outbox.popleft())
                last_sent = now
            n = len(self.sub_indices)
            if faults.pause_ticks or n == 0:
                self.fresh.clear()
            else:
                if self.fresh:
                    fresh = np.array([i for i in dict.fromkeys(self.fresh) if i in self.modes], np.int64)
                    self.fresh.clear()
                    if len(fresh):
                        kinds = np.array([self.modes[int(i)] for i in fresh], np.int8)
                        kinds = packets.packet_kinds(kinds, hub.market.is_index[fresh])
                        await self._send_ticks(fresh, kinds)
                        last_sent = now
                indices, kinds = self._due(rate, elapsed)
                for start in range(0, len(indices), MAX_PACKETS_PER_SEND):
                    end = start + MAX_PACKETS_PER_SEND
                    await self._send_ticks(indices[start:end], kinds[start:end])
                    last_sent = now
            if now - last_sent >= HEARTBEAT_EVERY_S:
                await ws.send_bytes(packets.HEARTBEAT)
                last_sent = now

    async def _send_ticks(self, indices: np.ndarray, kinds: np.ndarray) -> None:
        hub = self.hub
        if hub.stamp_index is None:
            frame = packets.build_frame(hub.market, indices, kinds)
        else:  # --stamp-token: the marker's last_quantity is this frame's send time (epoch ms mod 2^32)
            frame = packets.build_frame(hub.market, indices, kinds, stamp_index=hub.stamp_index,
                                        stamp_value=int(time.time() * 1000) % (1 << 32))
        await self.ws.send_bytes(frame)
        self.ticks_sent += len(indices)
        self.hub.ticks_sent += len(indices)
        self.hub.frames_sent += 1


class TickerHub:
    """All ticker connections, by api key."""

    def __init__(self, market, accounts, faults, tick_rate: float):
        self.market = market
        self.accounts = accounts
        self.faults = faults
        self.tick_rate = tick_rate
        self.stamp_index: int | None = None  # --stamp-token (benchmarks): instrument index of the marker
        self.connections: dict[str, set[TickerConnection]] = {}
        self.ticks_sent = 0
        self.frames_sent = 0
        self.order_messages = 0
        self.refused = 0
        self.dropped = 0
        self.closed_for_session = 0
        self._closing: set[asyncio.Task] = set()

    def on_order_update(self, account: Account, data: dict) -> None:
        for conn in self.connections.get(account.api_key, ()):
            conn.send_order(data)
            self.order_messages += 1

    def close_ended_sessions(self, sessions) -> int:
        """Close every connection whose access token no longer has a live session; the client's reconnect
        then gets 403. (How Kite ends such a socket is not published: ours is a close frame, 1008.)"""
        ended = [c for conns in self.connections.values() for c in conns
                 if not sessions.is_live(c.api_key, c.access_token)]
        for conn in ended:
            task = asyncio.create_task(conn.ws.close(code=WSCloseCode.POLICY_VIOLATION,
                                                     message=b"Session expired: log in again."))
            self._closing.add(task)   # held until done: the loop keeps only weak references to tasks
            task.add_done_callback(self._closing.discard)
        self.closed_for_session += len(ended)
        return len(ended)

    def drop_all(self) -> int:
        """Abort every connection without a close frame: the client sees 1006 and reconnects."""
        count = 0
        for conns in self.connections.values():
            for conn in list(conns):
                if conn.transport is not None:
                    conn.transport.abort()
                    count += 1
        self.dropped += count
        return count

    def state(self) -> dict:
        return {
            "connections": {k: len(v) for k, v in self.connections.items() if v},
            "subscriptions": {k: [len(c.modes) for c in v] for k, v in self.connections.items() if v},
            "ticks_sent": self.ticks_sent, "frames_sent": self.frames_sent,
            "order_messages": self.order_messages, "refused": self.refused, "dropped": self.dropped,
            "closed_for_session": self.closed_for_session,
            "tick_rate": self.tick_rate,
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        api_key = request.query.get("api_key")
        access_token = request.query.get("access_token")
        try:
            if self.faults.take_refuse_ws():
                raise KiteError("Handshake refused (paper broker fault).", "TokenException", 403)
            self.accounts.authenticate(api_key, access_token)
            if len(self.connections.get(api_key, ())) >= MAX_CONNECTIONS_PER_KEY:
                raise KiteError("Too many connections: at most 3 per api_key.", "NetworkException", 429)
        except KiteError as err:
            self.refused += 1
            return web.json_response({"status": "error", "error_type": err.error_type, "message": err.message,
                                      "data": None}, status=err.status)
        transport = request.transport
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, compress=False, max_msg_size=1 << 22)
        await ws.prepare(request)
        conn = TickerConnection(self, ws, api_key, transport, access_token)
        self.connections.setdefault(api_key, set()).add(conn)
        sender = asyncio.create_task(conn.run_sender())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    conn.handle_text(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.connections[api_key].discard(conn)
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, Exception):
                pass
        return ws
