"""What a failed broker call means: worth retrying (the order may or may not be there) or final."""
from __future__ import annotations

import requests
from kiteconnect import exceptions as kite_errors


class Transient(Exception):
    """A failure worth retrying: the order may or may not have reached the broker."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (requests.RequestException, ConnectionError, TimeoutError, Transient)):
        return True
    if isinstance(exc, (kite_errors.NetworkException, kite_errors.DataException)):
        return True  # NetworkException covers Kite's 429 "Too many requests" too
    if isinstance(exc, kite_errors.GeneralException):
        return getattr(exc, "code", 500) >= 500 or getattr(exc, "code", 0) == 429
    return False


def is_final_rejection(exc: BaseException) -> bool:
    return isinstance(exc, kite_errors.KiteException) and not is_transient(exc)


def describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}{f' ({code})' if code else ''}: {text}"[:500]
