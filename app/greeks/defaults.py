"""Rate and dividend-yield defaults (OPTION_GREEKS_INTEREST_RATE, OPTION_GREEKS_DIVIDEND_YIELD), from app.config."""
from app.config import load_settings

_settings = load_settings()
DEFAULT_RATE = _settings.option_greeks_interest_rate
DEFAULT_DIVIDEND_YIELD = _settings.option_greeks_dividend_yield
