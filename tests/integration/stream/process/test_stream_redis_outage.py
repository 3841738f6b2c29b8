"""The stream keeps running through a Redis outage and resumes publishing by itself.

Its own module: it runs a stream process on a private Redis, and the shared
stream of test_stream_process.py must be gone (Kite allows 3 sockets per api key).
"""
from __future__ import annotations

import time

from tests.support.channels import ChannelListener
from tests.support.processes import StreamProcess
from tests.support.redis_server import PrivateRedis


def test_stream_survives_a_redis_outage(broker_env, accounts, instruments, subscribed):
    private = PrivateRedis()
    private.start()
    process = StreamProcess(env={"REDIS_URL": private.url}).start()
    try:
        listener = ChannelListener(private.url, "ticker:nifty:*")
        assert listener.first(lambda m: True, timeout=30), process.log()
        listener.close()
        private.stop()
        time.sleep(3)
        assert process.alive(), process.log()
        private.start()  # same port, empty: the stream takes its lease again and publishes
        listener = ChannelListener(private.url, "ticker:nifty:*")
        assert listener.first(lambda m: True, timeout=30), f"no ticks after Redis came back:\n{process.log()}"
        listener.close()
        assert process.alive()
    finally:
        process.stop()
        private.stop()
