"""Share broker accounts among stream processes through leases in Redis.

An account is streamed by the process holding ``stream:lease:{account_id}``
(SET NX PX with a random holder token; renewed by compare-and-extend in Lua,
released by compare-and-delete). A holder that dies stops renewing; its lease
expires after ``ttl_s`` (10 s) and the next ``sync`` of another process,
every ``renew_every_s`` (3 s), takes it: at most ttl + renew interval = 13 s.

Fair share: live processes register in the sorted set ``stream:members``
(score = last heartbeat, ms). A process takes at most ceil(accounts / live
processes) accounts and releases the excess when others are alive, so a
newcomer gets its share within a couple of sync rounds.

If Redis cannot be reached, leases whose renewal is older than the TTL are
reported lost: another process may hold them by now, and streaming an
account twice could exceed Kite's 3-connections-per-key limit.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable

import redis

from workers.stream import metrics

log = logging.getLogger(__name__)

LEASE_KEY = "stream:lease:{account_id}"
MEMBERS_KEY = "stream:members"

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


@dataclass
class LeaseChanges:
    gained: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


class AccountLeases:
    def __init__(self, client: redis.Redis, holder_id: str | None = None, ttl_s: float = 10.0,
                 renew_every_s: float = 3.0, fair_share: bool = True, clock=time.monotonic) -> None:
        self.client = client
        self.holder_id = holder_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ttl_ms = int(ttl_s * 1000)
        self.renew_every_s = renew_every_s
        self.fair_share = fair_share
        self._clock = clock
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)
        self.held: dict[str, float] = {}  # account_id -> monotonic time of the last successful renewal

    # -- one round ---------------------------------------------------------
    def sync(self, accounts: Iterable[str]) -> LeaseChanges:
        """Renew what is held, drop what is gone, take free accounts up to the fair share."""
        accounts = sorted(set(accounts))
        changes = LeaseChanges()
        try:
            self._heartbeat()
            for account in list(self.held):
                if account not in accounts:
                    self.release(account)
                    changes.lost.append(account)
                elif self._extend(keys=[self._key(account)], args=[self.holder_id, self.ttl_ms]):
                    self.held[account] = self._clock()
                else:
                    del self.held[account]  # expired and taken by someone else
                    changes.lost.append(account)
            share = self.share(len(accounts))
            # Excess first: release to make room for a newcomer.
            for account in sorted(self.held, reverse=True)[: max(0, len(self.held) - share)]:
                self.release(account)
                changes.lost.append(account)
            for account in accounts:
                if len(self.held) >= share:
                    break
                if account not in self.held and self.client.set(self._key(account), self.holder_id, nx=True, px=self.ttl_ms):
                    self.held[account] = self._clock()
                    changes.gained.append(account)
        except (redis.RedisError, OSError) as exc:
            log.warning("lease sync failed: %s", exc)
            now = self._clock()
            for account, renewed in list(self.held.items()):
                if now - renewed > self.ttl_ms / 1000:
                    del self.held[account]
                    changes.lost.append(account)
        metrics.LEASES_HELD.set(len(self.held))
        return changes

    def share(self, n_accounts: int) -> int:
        if not self.fair_share:
            return n_accounts
        return math.ceil(n_accounts / max(1, self.live_members()))

    def live_members(self) -> int:
        return int(self.client.zcard(MEMBERS_KEY))

    def release(self, account: str) -> None:
        self.held.pop(account, None)
        try:
            self._release(keys=[self._key(account)], args=[self.holder_id])
        except (redis.RedisError, OSError):
            pass  # it expires by itself

    def release_all(self) -> None:
        for account in list(self.held):
            self.release(account)
        try:
            self.client.zrem(MEMBERS_KEY, self.holder_id)
        except (redis.RedisError, OSError):
            pass
        metrics.LEASES_HELD.set(0)

    def holder_of(self, account: str) -> str | None:
        value = self.client.get(self._key(account))
        return value.decode() if isinstance(value, bytes) else value

    def _heartbeat(self) -> None:
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(MEMBERS_KEY, {self.holder_id: now_ms})
        pipe.zremrangebyscore(MEMBERS_KEY, "-inf", now_ms - self.ttl_ms)
        pipe.execute()

    @staticmethod
    def _key(account: str) -> str:
        return LEASE_KEY.format(account_id=account)


class LeaseKeeper:
    """Runs ``AccountLeases.sync`` every ``renew_every_s`` in a thread and
    reports changes: ``on_gained(account_id)`` / ``on_lost(account_id)``
    (the stream adds or removes the account in its TickerPool), then
    ``on_changed()`` once per round that changed anything (so the stream
    recomputes its subscriptions once, not after each account). ``wake``
    runs a round now (the accounts changed); ``drop`` gives one account up now."""

    def __init__(self, leases: AccountLeases, accounts: Callable[[], Iterable[str]],
                 on_gained: Callable[[str], None], on_lost: Callable[[str], None],
                 on_changed: Callable[[], None] | None = None) -> None:
        self.leases = leases
        self.accounts = accounts
        self.on_gained = on_gained
        self.on_lost = on_lost
        self.on_changed = on_changed
        self._stop = threading.Event()
        self._wake = threading.Event()
        # One change at a time: a drop between a round's sync and its callbacks would
        # otherwise be undone by a late on_gained.
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None

    def start(self) -> "LeaseKeeper":
        self._thread = threading.Thread(target=self._run, name="stream-leases", daemon=True)
        self._thread.start()
        return self

    def stop(self, release: bool = True, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if release:
            with self._lock:
                for account in list(self.leases.held):
                    self._call(self.on_lost, account)
                self.leases.release_all()

    def wake(self) -> None:
        """Run a round now rather than at the next renewal (safe from any thread)."""
        self._wake.set()

    def drop(self, account: str) -> None:
        """Give the account up now (its session died): release the lease and report it lost.
        A later round takes it again only if ``accounts()`` lists it again."""
        with self._lock:
            held = account in self.leases.held
            self.leases.release(account)
            metrics.LEASES_HELD.set(len(self.leases.held))
            if held:
                self._call(self.on_lost, account)
                self._changed()

    def if_held(self, account: str, action: Callable[[], None]) -> bool:
        """Run ``action`` only while the account's lease is held (no round or drop meanwhile)."""
        with self._lock:
            if account not in self.leases.held:
                return False
            action()
            return True

    def run_once(self) -> LeaseChanges:
        with self._lock:
            try:
                accounts = list(self.accounts())
            except Exception:
                log.exception("could not list accounts; keeping current leases")
                accounts = list(self.leases.held)
            changes = self.leases.sync(accounts)
            for account in changes.lost:
                self._call(self.on_lost, account)
            for account in changes.gained:
                self._call(self.on_gained, account)
            if changes.lost or changes.gained:
                self._changed()
            return changes

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self.leases.renew_every_s)
            self._wake.clear()

    def _changed(self) -> None:
        if self.on_changed is not None:
            try:
                self.on_changed()
            except Exception:
                log.exception("lease change callback failed")

    @staticmethod
    def _call(fn, account: str) -> None:
        try:
            fn(account)
        except Exception:
            log.exception("lease callback failed for %s", account)
