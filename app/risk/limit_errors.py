"""How a risk-limit check refuses a request: a limit breached (422 risk_limit), or a figure the check
needs that cannot be known now (503 risk_check_unavailable). Either way nothing was stored or sent."""
from __future__ import annotations

from decimal import Decimal

LIMIT_NAMES = {
    "max_lots_per_order": "lots per order",
    "max_order_value": "order value",
    "max_open_orders": "open orders",
    "max_daily_loss": "daily loss",
}


def _plain(value):
    return float(value) if isinstance(value, Decimal) else value


class RiskLimitBreached(Exception):
    """The request would breach one of the account's limits (`limit`: its name in the limits)."""

    def __init__(self, limit: str, limit_value, value, explanation: str, underlying: str | None = None,
                 leg: int | None = None) -> None:
        self.limit, self.limit_value, self.value = limit, limit_value, value
        self.underlying, self.leg = underlying, leg
        self.outcome = "nothing was placed"  # a refused modification: "the order is unchanged"
        where = f" (leg {leg})" if leg is not None else ""
        self.explanation = f"risk limit {limit} breached{where}: {explanation}"
        super().__init__(self.explanation)

    def __str__(self) -> str:
        return f"{self.explanation}; {self.outcome}"

    @property
    def details(self) -> dict:
        details = {"limit": self.limit, "limit_value": _plain(self.limit_value), "value": _plain(self.value)}
        if self.underlying is not None:
            details["underlying"] = self.underlying
        if self.leg is not None:
            details["leg"] = self.leg
        return details


class RiskCheckUnavailable(Exception):
    """A limit could not be checked (no live price, the broker's positions unreadable): the request is
    refused rather than placed unchecked."""

    def __init__(self, limit: str, cause: str, retry_after_s: float | None = None) -> None:
        self.limit, self.cause, self.retry_after_s = limit, cause, retry_after_s
        self.outcome = "nothing was placed"
        super().__init__(limit, cause)

    def __str__(self) -> str:
        return (f"the {LIMIT_NAMES.get(self.limit, self.limit)} limit ({self.limit}) could not be checked "
                f"({self.cause}); {self.outcome}. Retry in a moment")

    @property
    def details(self) -> dict:
        details = {"limit": self.limit, "cause": self.cause}
        if self.retry_after_s is not None:
            details["retry_after_s"] = self.retry_after_s
        return details
