"""Rate and dividend-yield defaults, read from the environment once at import."""
import os

DEFAULT_RATE = float(os.environ.get("OPTION_GREEKS_INTEREST_RATE", "0.10"))
DEFAULT_DIVIDEND_YIELD = float(os.environ.get("OPTION_GREEKS_DIVIDEND_YIELD", "0.0"))
