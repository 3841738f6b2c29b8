"""What the tests, the chaos suite and the benchmarks share (helpers, never fixtures: those are in
the conftests, and no test imports a conftest).

- `waiting`: `wait_for`, the one way to wait for a condition with a deadline.
- `processes`: one wrapper per process of the stack — Celery worker, stream, gunicorn, live
  server, paper broker — on `ManagedProcess` (log file, stop, kill, process group).
- `faults`: resetting broker faults, the market and circuit breakers between tests (`clean_faults`).
- `environment`: the integration environment (database, Redis DB, variables), set up once per run.
- `ports`, `redis_server`: free loopback ports, a private Redis to stop and restart.
- Builders of what tests send and read: `orders`, `batches`, `webhooks`, `realtime`, `channels`,
  `paper_broker`, `instruments`, `stream_frames`, `option_book`, `deploy`, `promql`,
  `metrics_inventory`, `metric_series`.
"""
