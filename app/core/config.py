"""Every setting of the service, read from the environment in this one place, once per process.

Each entry point (web: `create_app`, worker and beat: `workers.celery_app`, stream,
launcher) builds the process's `Settings` with `configure()`; everything else reads
them through `get_settings()`, which builds them from the environment on first use when
no entry point did (a script, a test). Nothing reads the environment at import time.

Defaults run on one machine with nothing installed: a SQLite file under
``instance/``, the paper broker on localhost, and a Redis URL handed over by
the launcher (``launcher/``), which starts a private server when ``REDIS_URL`` is unset.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.fernet import Fernet

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INSTANCE_DIR = PROJECT_ROOT / "instance"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value if value else default


def _env_bool(name: str, default: bool) -> bool:
    return _env(name, "true" if default else "false").lower() in ("1", "true", "yes", "on")


def parse_freeze_quantities(text: str) -> dict[str, int]:
    """`NIFTY=1755,BANKNIFTY=600` → {"NIFTY": 1755, "BANKNIFTY": 600}; a bad entry is a ValueError
    at start-up, not a surprise at the first large order."""
    quantities: dict[str, int] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        name, value = name.strip().upper(), value.strip()
        if not sep or not name or not value.isdigit() or int(value) <= 0:
            raise ValueError(f"FREEZE_QUANTITIES: {entry!r} is not UNDERLYING=positive quantity "
                             "(e.g. NIFTY=1755,BANKNIFTY=600)")
        quantities[name] = int(value)
    return quantities


def parse_daily_expiry(text: str) -> tuple[int, int] | None:
    """`06:00` → (6, 0), IST; `off` → None (sessions end only when the broker refuses the token). A bad
    value is a ValueError at start-up."""
    text = text.strip().lower()
    if text in ("off", "none", "false", "0"):
        return None
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"KITE_SESSION_EXPIRY_IST: {text!r} is not HH:MM (India time) or off")
    return int(hours), int(minutes)


def credentials_key() -> str:
    """CREDENTIALS_KEY, or a development key kept in instance/ so restarts can decrypt."""
    key = get_settings().credentials_key
    if key:
        return key
    path = INSTANCE_DIR / "credentials.key"
    if not path.exists():
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass(frozen=True)
class Settings:
    database_url: str = field(
        default_factory=lambda: _env("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'ticker.db'}")
    )
    redis_url: str = field(default_factory=lambda: _env("REDIS_URL", "redis://127.0.0.1:6379/0"))
    # Commands share a pool of this many connections per process; a caller waits up to
    # REDIS_POOL_WAIT_S for a free one instead of failing (a burst of WebSocket connects).
    redis_max_connections: int = field(default_factory=lambda: int(_env("REDIS_MAX_CONNECTIONS", "200")))
    redis_pool_wait_s: float = field(default_factory=lambda: float(_env("REDIS_POOL_WAIT_S", "5")))
    api_keys: str = field(default_factory=lambda: _env("API_KEYS", ""))
    credentials_key: str = field(default_factory=lambda: _env("CREDENTIALS_KEY", ""), repr=False)
    # Seconds before Redis hands an unacknowledged task to another worker (celeryconfig.py says why 300).
    celery_visibility_timeout: int = field(default_factory=lambda: int(_env("CELERY_VISIBILITY_TIMEOUT", "300")))
    port: int = field(default_factory=lambda: int(_env("PORT", "5000")))
    log_level: str = field(default_factory=lambda: _env("LOG_LEVEL", "INFO"))
    max_content_length: int = field(default_factory=lambda: int(_env("MAX_CONTENT_LENGTH", str(256 * 1024))))

    # Broker: the paper broker by default, real Kite in production.
    kite_api_root: str = field(default_factory=lambda: _env("KITE_API_ROOT", "http://127.0.0.1:5100"))
    kite_ws_root: str = field(default_factory=lambda: _env("KITE_WS_ROOT", "ws://127.0.0.1:5100/ws"))
    broker_timeout_s: float = field(default_factory=lambda: float(_env("BROKER_TIMEOUT_S", "7")))
    # When Kite ends every access token (IST); None ("off"): only a refused token ends a session.
    kite_session_expiry_ist: tuple[int, int] | None = field(
        default_factory=lambda: parse_daily_expiry(_env("KITE_SESSION_EXPIRY_IST", "06:00")))
    # Kite's login page; empty: derived from KITE_API_ROOT (app.kite_session.login.kite_login_page).
    kite_login_url: str = field(default_factory=lambda: _env("KITE_LOGIN_URL", ""))

    # Orders.
    order_max_attempts: int = field(default_factory=lambda: int(_env("ORDER_MAX_ATTEMPTS", "5")))
    order_retry_base_s: float = field(default_factory=lambda: float(_env("ORDER_RETRY_BASE_S", "0.5")))
    order_retry_cap_s: float = field(default_factory=lambda: float(_env("ORDER_RETRY_CAP_S", "30")))
    order_rate_per_second: float = field(default_factory=lambda: float(_env("ORDER_RATE_PER_SECOND", "10")))
    order_rate_per_minute: float = field(default_factory=lambda: float(_env("ORDER_RATE_PER_MINUTE", "400")))
    # Placements a day per Zerodha account (Kite's 5,000; the IST calendar day): app.broker.order_budget.
    order_budget_per_day: int = field(default_factory=lambda: int(_env("ORDER_BUDGET_PER_DAY", "5000")))
    # Freeze quantities that replace the shipped file's (app/market/data/freeze_quantities.csv) per underlying.
    freeze_quantities: dict[str, int] = field(
        default_factory=lambda: parse_freeze_quantities(_env("FREEZE_QUANTITIES", "")))

    # Greeks and the tick stream (names as in the old ticker service).
    option_greeks_interest_rate: float = field(
        default_factory=lambda: float(_env("OPTION_GREEKS_INTEREST_RATE", "0.10"))
    )
    option_greeks_dividend_yield: float = field(
        default_factory=lambda: float(_env("OPTION_GREEKS_DIVIDEND_YIELD", "0.0"))
    )
    tick_batch_window_ms: int = field(default_factory=lambda: int(_env("TICK_BATCH_WINDOW_MS", "100")))
    tick_batch_max_size: int = field(default_factory=lambda: int(_env("TICK_BATCH_MAX_SIZE", "1000")))
    max_instruments_per_ws: int = field(default_factory=lambda: int(_env("MAX_INSTRUMENTS_PER_WS", "3000")))
    max_ws_connections: int = field(default_factory=lambda: int(_env("MAX_WS_CONNECTIONS", "3")))
    stream_metrics_port: int = field(default_factory=lambda: int(_env("STREAM_METRICS_PORT", "9102")))
    stream_metrics_host: str = field(default_factory=lambda: _env("STREAM_METRICS_HOST", "0.0.0.0"))

    # Broker circuit breaker (per account, shared by every worker through Redis).
    circuit_breaker_threshold: int = field(default_factory=lambda: int(_env("CIRCUIT_BREAKER_THRESHOLD", "8")))
    circuit_breaker_cooldown_s: float = field(default_factory=lambda: float(_env("CIRCUIT_BREAKER_COOLDOWN_S", "5")))

    # Webhooks.
    webhook_allow_private: bool = field(default_factory=lambda: _env_bool("WEBHOOK_ALLOW_PRIVATE", False))
    webhook_retry_base_s: float = field(default_factory=lambda: float(_env("WEBHOOK_RETRY_BASE_S", "1")))
    webhook_retry_cap_s: float = field(default_factory=lambda: float(_env("WEBHOOK_RETRY_CAP_S", "300")))
    webhook_max_attempts: int = field(default_factory=lambda: max(1, int(_env("WEBHOOK_MAX_ATTEMPTS", "5"))))
    webhook_timeout_s: float = field(default_factory=lambda: float(_env("WEBHOOK_TIMEOUT_S", "5")))

    # WebSocket relay (per web process).
    ws_order_queue_max: int = field(default_factory=lambda: int(_env("WS_ORDER_QUEUE_MAX", "1000")))
    ws_tick_buffer_max: int = field(default_factory=lambda: int(_env("WS_TICK_BUFFER_MAX", "50")))
    ws_send_buffer_bytes: int = field(default_factory=lambda: int(_env("WS_SEND_BUFFER_BYTES", str(256 * 1024))))


_current: Settings | None = None


def get_settings() -> Settings:
    """The process's settings: as its entry point configured them, else from the environment."""
    global _current
    if _current is None:
        _current = Settings()
    return _current


def configure(base: Settings | None = None, **changes) -> Settings:
    """Set the process's settings: `base` (default: read from the environment now) with `changes`.
    Entry points call it once at start; tests use it to change a setting and to put it back."""
    global _current
    _current = replace(base or Settings(), **changes)
    return _current
