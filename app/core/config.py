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


# Asymmetric algorithms only: tokens are checked against an issuer's public keys, so "none" and the
# HS family (where a public key would serve as the shared secret) are never accepted.
JWT_PUBLIC_KEY_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def parse_jwt_algorithms(text: str) -> tuple[str, ...]:
    """`RS256,ES256` → ("RS256", "ES256"); `none`, HS256 or an unknown name is a ValueError at start-up."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names:
        if name not in JWT_PUBLIC_KEY_ALGORITHMS:
            raise ValueError(f"JWT_ALGORITHMS: {name!r} is not accepted; choose among "
                             f"{', '.join(JWT_PUBLIC_KEY_ALGORITHMS)} (public-key algorithms only)")
    if not names:
        raise ValueError("JWT_ALGORITHMS: name at least one algorithm (default RS256,ES256)")
    return names


def _env_seconds(name: str, default: str) -> float:
    text = _env(name, default)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also NaN
        raise ValueError(f"{name}: {text!r} is not a number of seconds >= 0")
    return value


# The longest an order may wait to be sent (ORDER_MAX_QUEUE_S and each order's `expire_after_s`): well
# under the Celery visibility timeout, since a task deferred until its send slot holds its message.
ORDER_MAX_QUEUE_S_LIMIT = 60


def parse_max_queue_s(text: str) -> float:
    """ORDER_MAX_QUEUE_S: seconds from 1 to ORDER_MAX_QUEUE_S_LIMIT; anything else a ValueError at start-up."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= ORDER_MAX_QUEUE_S_LIMIT:  # also NaN
        raise ValueError(f"ORDER_MAX_QUEUE_S: {text!r} is not a number of seconds from 1 to {ORDER_MAX_QUEUE_S_LIMIT}")
    return value


def parse_backlog_max(text: str) -> int | None:
    """ORDER_BACKLOG_MAX: a positive whole number; empty: derived from the rate (app.orders.admission)."""
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"ORDER_BACKLOG_MAX: {text!r} is not a positive whole number of orders")
    return int(text)


# How an operator makes a CREDENTIALS_KEY (quoted in the start-up error and the README).
CREATE_CREDENTIALS_KEY = ('python -c "from cryptography.fernet import Fernet; '
                          'print(Fernet.generate_key().decode())"')


class MissingCredentialsKey(RuntimeError):
    """CREDENTIALS_KEY is unset outside `make run`: a key made up by each host could not read what
    another host stored."""


def parse_credentials_keys(text: str) -> tuple[str, ...]:
    """`NEW,OLD` → ("NEW", "OLD"): the first encrypts, every one decrypts (rotation). A malformed key
    is a ValueError at start-up that names its position, never its text."""
    keys = tuple(key.strip() for key in text.split(",") if key.strip())
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key.encode())
        except ValueError:
            raise ValueError(f"CREDENTIALS_KEY: key {position} of {len(keys)} is not a Fernet key (32 url-safe "
                             f"base64-encoded bytes); make one with {CREATE_CREDENTIALS_KEY}") from None
    return keys


def credentials_keys() -> tuple[str, ...]:
    """CREDENTIALS_KEY's keys, the encrypting one first; MissingCredentialsKey when it is unset."""
    keys = get_settings().credentials_keys
    if not keys:
        raise MissingCredentialsKey(
            "CREDENTIALS_KEY is not set. It encrypts the stored Kite and webhook secrets, and every process "
            f"on every host must have the same one: make one with {CREATE_CREDENTIALS_KEY}, keep it, and set it "
            "in the environment of every process (`make run` keeps its own in instance/credentials.key)")
    return keys


def credentials_key() -> str:
    """The key that encrypts: CREDENTIALS_KEY's first."""
    return credentials_keys()[0]


def require_credentials_key() -> None:
    """An entry point's first check (web, worker, stream, CLI): fail at start, not at the first secret."""
    credentials_keys()


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
    # Bearer tokens (app/web/jwt_auth.py), accepted beside API keys when JWT_JWKS_URL is set.
    jwt_jwks_url: str = field(default_factory=lambda: _env("JWT_JWKS_URL", ""))
    jwt_issuer: str = field(default_factory=lambda: _env("JWT_ISSUER", ""))
    jwt_audience: str = field(default_factory=lambda: _env("JWT_AUDIENCE", ""))
    jwt_algorithms: tuple[str, ...] = field(
        default_factory=lambda: parse_jwt_algorithms(_env("JWT_ALGORITHMS", "RS256,ES256")))
    jwt_leeway_s: float = field(default_factory=lambda: _env_seconds("JWT_LEEWAY_S", "30"))
    jwt_accounts_claim: str = field(default_factory=lambda: _env("JWT_ACCOUNTS_CLAIM", "accounts"))
    # The key set is fetched again past its max age, and for an unknown `kid` or after a failure at most
    # once per min refresh (app/web/jwks.py).
    jwt_jwks_min_refresh_s: float = field(default_factory=lambda: _env_seconds("JWT_JWKS_MIN_REFRESH_S", "60"))
    jwt_jwks_max_age_s: float = field(default_factory=lambda: _env_seconds("JWT_JWKS_MAX_AGE_S", "300"))
    # CREDENTIALS_KEY: comma-separated Fernet keys; read through credentials_keys().
    credentials_keys: tuple[str, ...] = field(
        default_factory=lambda: parse_credentials_keys(_env("CREDENTIALS_KEY", "")), repr=False)
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
    # An order unsent this long after it was accepted is EXPIRED, never placed late (its own `expire_after_s`
    # overrides it); past ORDER_BACKLOG_MAX unsent orders per Zerodha account (default: what the rate sends
    # within ORDER_MAX_QUEUE_S) intake answers 429. app.orders.admission.
    order_max_queue_s: float = field(default_factory=lambda: parse_max_queue_s(_env("ORDER_MAX_QUEUE_S", "30")))
    order_backlog_max: int | None = field(default_factory=lambda: parse_backlog_max(_env("ORDER_BACKLOG_MAX", "")))
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
    # Distinct instruments that flush a batch before its window closes. Above the instruments subscribed
    # (27,000 for three accounts), so at market scale the window decides: a flush per 1,000 instruments
    # would publish every tick unconflated, in hundreds of small messages a flush (issue #22).
    tick_batch_max_size: int = field(default_factory=lambda: int(_env("TICK_BATCH_MAX_SIZE", "30000")))
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
    ws_max_message_bytes: int = field(default_factory=lambda: int(_env("WS_MAX_MESSAGE_BYTES", str(128 * 1024))))
    ws_max_clients_per_key: int = field(default_factory=lambda: int(_env("WS_MAX_CLIENTS_PER_KEY", "20")))
    # Below gunicorn's per-worker connection pool, so plain requests (/health) always find room.
    ws_max_clients: int = field(default_factory=lambda: int(_env(
        "WS_MAX_CLIENTS", str(int(_env("WEB_WORKER_CONNECTIONS", "2000")) * 9 // 10))))


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
