"""AccountLeases: exclusive, renewed, handed over when a holder stops renewing, fairly shared."""
import time

import redis

from workers.stream.leases import AccountLeases, LeaseKeeper

ACCOUNTS = ["acc1", "acc2", "acc3", "acc4"]


def leases(url, name, **kw):
    return AccountLeases(redis.Redis.from_url(url), holder_id=name, **kw)


def test_leases_are_exclusive_and_renewal_keeps_them(redis_url):
    a = leases(redis_url, "A", ttl_s=1.0, fair_share=False)
    b = leases(redis_url, "B", ttl_s=1.0, fair_share=False)
    assert sorted(a.sync(ACCOUNTS).gained) == ACCOUNTS
    assert b.sync(ACCOUNTS).gained == []
    for _ in range(4):  # 1.6 s > TTL, but A renews every 0.4 s
        time.sleep(0.4)
        assert a.sync(ACCOUNTS).lost == []
        assert b.sync(ACCOUNTS).gained == []
    assert a.holder_of("acc1") == "A"


def test_dead_holder_hands_over_within_ttl_plus_one_round(redis_url):
    a = leases(redis_url, "A", ttl_s=1.0)
    b = leases(redis_url, "B", ttl_s=1.0)
    a.sync(ACCOUNTS)
    b.sync(ACCOUNTS)
    a.sync(ACCOUNTS)
    b.sync(ACCOUNTS)
    assert len(a.held) == len(b.held) == 2 and not set(a.held) & set(b.held)  # fair share
    a_had = sorted(a.held)
    # A dies: it just stops renewing. B takes everything once A's leases and heartbeat expire.
    started = time.monotonic()
    while len(b.held) < 4 and time.monotonic() - started < 5:
        b.sync(ACCOUNTS)
        time.sleep(0.2)
    took = time.monotonic() - started
    assert sorted(b.held) == ACCOUNTS
    assert 0.8 < took < 2.0  # after A's 1 s TTL, not before
    changes = a.sync(ACCOUNTS)  # A wakes up: its renewals fail, it learns the leases are gone
    assert sorted(changes.lost) == a_had and a.held == {} and changes.gained == []


def test_newcomer_gets_its_share_and_release_on_stop(redis_url):
    a = leases(redis_url, "A")
    assert len(a.sync(ACCOUNTS).gained) == 4  # alone: takes all
    b = leases(redis_url, "B")
    assert b.sync(ACCOUNTS).gained == []  # all held
    lost = a.sync(ACCOUNTS).lost  # A sees two members: share 2, releases its excess
    assert len(lost) == 2 and len(a.held) == 2
    assert sorted(b.sync(ACCOUNTS).gained) == sorted(lost)
    gained, lost_seen = [], []
    keeper = LeaseKeeper(b, lambda: ACCOUNTS, gained.append, lost_seen.append)
    keeper.stop(release=True)  # never started: stop only releases
    assert sorted(lost_seen) == sorted(lost) and b.held == {}
    assert a.holder_of(lost[0]) is None


def test_lease_keeper_thread_reports_gains(redis_url):
    gained = []
    keeper = LeaseKeeper(leases(redis_url, "K", ttl_s=2, renew_every_s=0.2), lambda: ["x", "y"],
                         gained.append, lambda _: None).start()
    deadline = time.monotonic() + 3
    while len(gained) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    keeper.stop()
    assert sorted(gained) == ["x", "y"]


def test_wake_runs_a_round_at_once_and_drop_gives_an_account_up(redis_url):
    """A session that died elsewhere (`wake`) or under the stream's own sockets (`drop`) costs its
    account the lease at once, not at the next renewal."""
    listed, gained, lost, rounds = ["x", "y"], [], [], []
    keeper = LeaseKeeper(leases(redis_url, "W", ttl_s=60, renew_every_s=30), lambda: list(listed),
                         gained.append, lost.append, on_changed=lambda: rounds.append(len(gained + lost))).start()
    try:
        deadline = time.monotonic() + 3
        while len(gained) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(gained) == ["x", "y"]
        assert rounds == [2]  # one call after the round, not one per account
        listed.remove("y")  # its session expired: no longer a streaming account
        keeper.wake()
        deadline = time.monotonic() + 1
        while not lost and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lost == ["y"] and keeper.leases.holder_of("y") is None

        keeper.drop("x")
        assert lost == ["y", "x"] and keeper.leases.holder_of("x") is None and keeper.leases.held == {}
        keeper.drop("x")  # not held any more: nothing to report
        assert lost == ["y", "x"] and rounds == [2, 3, 4]
        keeper.wake()  # still listed (say a login came meanwhile): taken again
        deadline = time.monotonic() + 1
        while gained.count("x") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gained == ["x", "y", "x"]
        assert keeper.leases.holder_of("x") == "W"
    finally:
        keeper.stop()
