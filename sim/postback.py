"""HTTP postbacks: each order update POSTed as JSON to the postback URL.

Updates of one order arrive in the order they happened: deliveries go through
LANES queues, an order always on the same one. Different orders are delivered
concurrently, as a real broker does, so a slow answer for one order does not hold
back the verdict on another (a batch's legs). A failed delivery is counted and not
retried (as with Kite).
"""
from __future__ import annotations

import asyncio
import json
import logging

import aiohttp

from .accounts import Account

log = logging.getLogger("sim.postback")


LANES = 8


class PostbackSender:
    def __init__(self, url: str | None):
        self.url = url
        self.queues: list[asyncio.Queue] = [asyncio.Queue() for _ in range(LANES)]
        self.sent = 0
        self.failed = 0
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None

    def on_order_update(self, account: Account, data: dict) -> None:
        if self.url:
            lane = hash(str(data.get("order_id"))) % LANES  # one order, one lane: its updates stay in order
            self.queues[lane].put_nowait(data)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._tasks = [asyncio.create_task(self._run(queue)) for queue in self.queues]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._session:
            await self._session.close()

    async def _run(self, queue: asyncio.Queue) -> None:
        while True:
            data = await queue.get()
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
        return {"url": self.url, "sent": self.sent, "failed": self.failed,
                "queued": sum(queue.qsize() for queue in self.queues)}
