"""Rate and dividend-yield defaults (OPTION_GREEKS_INTEREST_RATE, OPTION_GREEKS_DIVIDEND_YIELD), from the settings."""
from app.core.config import get_settings


def default_rate() -> float:
    return get_settings().option_greeks_interest_rate


def default_dividend_yield() -> float:
    return get_settings().option_greeks_dividend_yield
