"""Kite's error shape: the client raises the exception class named by `error_type`."""
from __future__ import annotations


class KiteError(Exception):
    def __init__(self, message: str, error_type: str = "InputException", status: int = 400):
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status = status


def input_error(message: str) -> KiteError:
    return KiteError(message, "InputException", 400)


def token_error(message: str = "Incorrect `api_key` or `access_token`.") -> KiteError:
    return KiteError(message, "TokenException", 403)


def too_many_requests() -> KiteError:
    return KiteError("Too many requests", "NetworkException", 429)
