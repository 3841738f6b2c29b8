"""The publisher's circuit breaker on a manual clock: closed, open after failures, one half-open probe."""
from workers.stream.publisher import BreakerState, PublishBreaker


def test_breaker_states_with_a_manual_clock():
    now = [0.0]
    breaker = PublishBreaker(failure_threshold=2, reset_timeout_s=5.0, clock=lambda: now[0])
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    now[0] = 5.1
    assert breaker.allow() and breaker.state is BreakerState.HALF_OPEN  # the probe
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()  # one failed probe re-opens
    now[0] = 10.3
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
