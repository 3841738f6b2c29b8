"""The domain schema (SQLAlchemy 2.0). Alembic migrations in migrations/ create it."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Named constraints keep migrations identical on PostgreSQL and SQLite.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(14, 2)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC timestamps on every backend (SQLite hands them back naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Account(Base):
    """A Kite account the service trades for; credentials are Fernet-encrypted."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key: Mapped[str] = mapped_column(String(64))
    api_secret_enc: Mapped[str] = mapped_column(Text)
    access_token_enc: Mapped[Optional[str]] = mapped_column(Text)
    broker_user_id: Mapped[Optional[str]] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # How its broker requests leave the service (app.broker.egress): at most one of a local source
    # address or an HTTP(S) proxy URL (encrypted: it may carry credentials); neither: the default route.
    egress_source_address: Mapped[Optional[str]] = mapped_column(String(64))
    egress_proxy_enc: Mapped[Optional[str]] = mapped_column(Text)
    # The Kite session (app.kite_session.state): "expired" once the broker refused the token (until
    # the next login); otherwise live while it has a token. Its expected end: the next 06:00 IST.
    session_status: Mapped[Optional[str]] = mapped_column(String(16))
    session_login_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())
    session_expires_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())
    session_expired_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())
    session_error: Mapped[Optional[str]] = mapped_column(Text)
    # Halted by a kill switch (app.risk.halt): no new order until POST /accounts/{id}/resume.
    halted_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())
    halted_reason: Mapped[Optional[str]] = mapped_column(Text)
    halted_by: Mapped[Optional[str]] = mapped_column(String(64))
    halted_kill_switch_id: Mapped[Optional[str]] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class KillSwitch(Base):
    """One kill-switch operation on an account (app.risk.kill_switch): its steps as they happen, and
    the run driving it — a run whose heartbeat stops is taken over by another."""

    __tablename__ = "kill_switches"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_kill_switches_account_id_idempotency_key"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="running", index=True)  # running | done | failed
    reason: Mapped[Optional[str]] = mapped_column(Text)
    requested_by: Mapped[Optional[str]] = mapped_column(String(64))
    idempotency_key: Mapped[Optional[str]] = mapped_column(String(128))
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[Optional[str]] = mapped_column(Text)
    holder: Mapped[Optional[str]] = mapped_column(String(128))
    heartbeat_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())
    runs: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())


class AccountLimits(Base):
    """An account's risk limits, checked at intake (app.risk.limits); null: no such limit."""

    __tablename__ = "account_limits"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    # Underlying (as Kite names it, "NIFTY") → lots per order; "*": any underlying not named.
    max_lots_per_order: Mapped[Optional[dict[str, int]]] = mapped_column(JSON)
    max_order_value: Mapped[Optional[Decimal]] = mapped_column(Money)
    max_open_orders: Mapped[Optional[int]] = mapped_column(Integer)
    max_daily_loss: Mapped[Optional[Decimal]] = mapped_column(Money)
    on_breach: Mapped[str] = mapped_column(String(8), default="reject")  # reject | kill (daily loss)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    updated_by: Mapped[Optional[str]] = mapped_column(String(64))


class Instrument(Base):
    """A row of the broker's instrument dump (refreshed daily)."""

    __tablename__ = "instruments"
    __table_args__ = (
        UniqueConstraint("exchange", "tradingsymbol", name="uq_instruments_exchange_tradingsymbol"),
        Index("ix_instruments_name_expiry", "name", "expiry"),
    )

    instrument_token: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    exchange_token: Mapped[int] = mapped_column(BigInteger)
    tradingsymbol: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64), default="")
    exchange: Mapped[str] = mapped_column(String(16))
    segment: Mapped[str] = mapped_column(String(16))
    instrument_type: Mapped[str] = mapped_column(String(8))
    expiry: Mapped[Optional[date]] = mapped_column(Date)
    strike: Mapped[float] = mapped_column(Float, default=0.0)
    tick_size: Mapped[float] = mapped_column(Float, default=0.05)
    lot_size: Mapped[int] = mapped_column(Integer, default=1)
    last_price: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class Batch(Base):
    """A multi-leg order executed together (a Celery chord) with rollback."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_batches_account_id_idempotency_key"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="RUNNING", index=True)
    rollback_on_failure: Mapped[bool] = mapped_column(Boolean, default=True)
    execution: Mapped[str] = mapped_column(String(16), default="parallel")
    total_orders: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[Optional[str]] = mapped_column(Text)
    idempotency_key: Mapped[Optional[str]] = mapped_column(String(128))
    request_hash: Mapped[Optional[str]] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    completed_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())

    legs: Mapped[list["Order"]] = relationship(
        back_populates="batch", order_by="Order.leg_index", foreign_keys="Order.batch_id"
    )
    rollback_actions: Mapped[list["RollbackAction"]] = relationship(
        back_populates="batch", order_by="RollbackAction.id"
    )


class Order(Base):
    """One broker order and its life: the record a client sees at /orders/{id}."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_orders_account_id_idempotency_key"),
        Index("ix_orders_account_id_created_at", "account_id", "created_at"),
        Index("orders_parent_id_index", "parent_id"),
        # An account's unsent orders (intake's backlog) and its non-final ones (the reconciler's pages).
        Index("ix_orders_account_id_status", "account_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    status: Mapped[str] = mapped_column(String(20), default="QUEUED", index=True)
    # The broker tag (Kite allows 20 characters) that lets a retry find an order already placed.
    tag: Mapped[str] = mapped_column(String(20), unique=True)
    broker_order_id: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    broker_status: Mapped[Optional[str]] = mapped_column(String(32))
    status_message: Mapped[Optional[str]] = mapped_column(Text)
    # The broker's raw text beside it (Kite's RMS reason), e.g. "RMS:Margin Exceeds,Required:…".
    status_message_raw: Mapped[Optional[str]] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[Optional[str]] = mapped_column(Text)
    idempotency_key: Mapped[Optional[str]] = mapped_column(String(128))
    request_hash: Mapped[Optional[str]] = mapped_column(String(64))

    # What the client asked for.
    exchange: Mapped[str] = mapped_column(String(16))
    tradingsymbol: Mapped[str] = mapped_column(String(64))
    instrument_token: Mapped[Optional[int]] = mapped_column(BigInteger)
    transaction_type: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(Integer)
    product: Mapped[str] = mapped_column(String(8))
    order_type: Mapped[str] = mapped_column(String(8))
    variety: Mapped[str] = mapped_column(String(12), default="regular")
    validity: Mapped[str] = mapped_column(String(8), default="DAY")
    validity_ttl: Mapped[Optional[int]] = mapped_column(Integer)  # minutes, TTL orders only
    price: Mapped[Optional[Decimal]] = mapped_column(Money)
    trigger_price: Mapped[Optional[Decimal]] = mapped_column(Money)
    disclosed_quantity: Mapped[Optional[int]] = mapped_column(Integer)
    market_protection: Mapped[Optional[float]] = mapped_column(Float)
    client_tag: Mapped[Optional[str]] = mapped_column(String(20))

    # What the broker reports.
    filled_quantity: Mapped[int] = mapped_column(Integer, default=0)
    average_price: Mapped[Optional[Decimal]] = mapped_column(Money)

    # Batch legs and rollback orders belong to a batch.
    batch_id: Mapped[Optional[str]] = mapped_column(ForeignKey("batches.id"), index=True)
    leg_index: Mapped[Optional[int]] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(12), default="order")  # order | leg | rollback | parent | slice | square_off

    # An order above the freeze quantity is a parent (never sent to the broker) whose slices are
    # orders of their own (app.orders.parents).
    parent_id: Mapped[Optional[str]] = mapped_column(ForeignKey("orders.id", name="orders_parent_id_fkey"))
    slice_index: Mapped[Optional[int]] = mapped_column(Integer)
    # A parent cancelled while slices were still being placed: those are cancelled once they are OPEN.
    cancel_requested_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())
    # A kill switch's square-off order (role "square_off") names its operation.
    kill_switch_id: Mapped[Optional[str]] = mapped_column(ForeignKey("kill_switches.id"), index=True)

    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    accepted_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())
    acked_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())
    # Admission (app.orders.admission): the request's `expire_after_s` (None: ORDER_MAX_QUEUE_S), the time
    # after which the order is EXPIRED rather than sent, and the send slot the rate limiter reserved for it.
    expire_after_s: Mapped[Optional[int]] = mapped_column(Integer)
    expires_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())
    send_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())

    events: Mapped[list["OrderEvent"]] = relationship(
        back_populates="order", order_by="OrderEvent.id", cascade="all, delete-orphan"
    )
    batch: Mapped[Optional[Batch]] = relationship(back_populates="legs", foreign_keys=[batch_id])
    # Loaded only where a parent is shown (app.orders.service): never implicitly.
    children: Mapped[list["Order"]] = relationship(
        foreign_keys=[parent_id], order_by="Order.slice_index", lazy="raise_on_sql", viewonly=True)


class OrderEvent(Base):
    """The audit trail: one row per state transition of an order."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    from_status: Mapped[Optional[str]] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[Optional[str]] = mapped_column(Text)
    detail: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)

    order: Mapped[Order] = relationship(back_populates="events")


class RollbackAction(Base):
    """A compensating action of a batch rollback: a cancel or a reversing order."""

    __tablename__ = "rollback_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    leg_order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    action: Mapped[str] = mapped_column(String(12))  # cancel | reverse
    reversal_order_id: Mapped[Optional[str]] = mapped_column(ForeignKey("orders.id"))
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str] = mapped_column(String(16), default="PENDING")  # PENDING | DONE | FAILED
    error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    completed_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())

    batch: Mapped[Batch] = relationship(back_populates="rollback_actions")


class Webhook(Base):
    """A registered receiver of order and batch events; its secret is encrypted."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    secret_enc: Mapped[str] = mapped_column(Text)
    # Send the raw secret in X-Webhook-Secret too, for receivers of the old ticker service only.
    legacy_secret_header: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One event to deliver to one webhook; kept (as FAILED) when attempts run out."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="PENDING", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[Optional[int]] = mapped_column(Integer)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime())

    attempt_log: Mapped[list["WebhookAttempt"]] = relationship(
        back_populates="delivery", order_by="WebhookAttempt.id", cascade="all, delete-orphan"
    )


class WebhookAttempt(Base):
    """Every delivery attempt, logged."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    status_code: Mapped[Optional[int]] = mapped_column(Integer)
    error: Mapped[Optional[str]] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)

    delivery: Mapped[WebhookDelivery] = relationship(back_populates="attempt_log")


class Subscription(Base):
    """A market-data subscription the stream process keeps live."""

    __tablename__ = "subscriptions"

    instrument_token: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    requested_mode: Mapped[str] = mapped_column(String(8), default="QUOTE")
    account_id: Mapped[Optional[str]] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
