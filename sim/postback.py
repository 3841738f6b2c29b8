"""HTTP postbacks: each order update POSTed as JSON to the postback URL, in order.

Deliveries go through one queue so a receiver sees updates in the order they
happened; a failed delivery is counted and not retried (as with Kite).
"""
from __future__ import annotations

import asyncio
import json
import logging

import aiohttp

from .accounts import Account

log = logging.getLogger("sim.postback")


class PostbackSender:
    def __init__(self, url: str | None):
        self.url = url
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sent = 0
        self.failed = 0
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    def on_order_update(self, account: Account, data: dict) -> None:
        if self.url:
            self.queue.put_nowait(data)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._session:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            data = await self.queue.get()
            try:
                async with self._session.post(self.url, data=json.dumps(data),
                                              headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    if resp.status >= 400:
                        raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                self.sent += 1
            except Exception as exc:  # a dead receiver must not stop later deliveries
                self.failed += 1
                log.warning("postback to %s failed: %s", self.url, exc)

    def state(self) -> dict:
        return {"url": self.url, "sent": self.sent, "failed": self.failed, "queued": self.queue.qsize()}
