"""Waiting for something to become true, with a deadline: the one polling contract of the
tests, the chaos suite and the benchmarks.

    wait_for(probe, timeout, interval, what=..., until=...)

calls `probe()` every `interval` seconds until `until(value)` holds (by default: the value is
truthy) and returns that value; at the deadline it looks once more, then raises `WaitTimeout`
(an AssertionError, so a wait that never ends reads as a failed expectation) naming `what`
(a string, or a function giving one at that moment, for context known only then) and the last
value seen. A probe may raise to end the wait early (a process that died).
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The awaited condition did not hold within the time allowed."""


def wait_for(probe: Callable[[], T], timeout: float = 15.0, interval: float = 0.05,
             what: str | Callable[[], str] = "condition", until: Callable[[T], object] = bool) -> T:
    """`probe()`'s first value for which `until(value)` holds; WaitTimeout after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            what = what() if callable(what) else what
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}; last value: {value!r}")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status `GET url` answers with, or None while nothing answers (a probe for `wait_for`)."""
    import requests

    try:
        return requests.get(url, timeout=timeout).status_code
    except requests.RequestException:
        return None
