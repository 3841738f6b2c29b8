"""Encryption of stored secrets (Kite credentials, webhook secrets) with Fernet."""
from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken

from app.core.config import credentials_key


@lru_cache(maxsize=4)
def _fernet(key: str) -> Fernet:
    return Fernet(key.encode())


def encrypt(plaintext: str) -> str:
    return _fernet(credentials_key()).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(credentials_key()).decrypt(token.encode()).decode()
    except InvalidToken as exc:  # wrong CREDENTIALS_KEY: say so instead of a bare traceback
        raise RuntimeError("stored secret cannot be decrypted: is CREDENTIALS_KEY the one it was stored with?") from exc


class ExpiredSeal(Exception):
    """A sealed text that was genuine but is older than allowed."""


class InvalidSeal(Exception):
    """Not sealed under this service's key: forged, damaged or from another deployment."""


def seal(text: str) -> str:
    """Encrypt and sign `text` with the time of sealing (URL-safe): for short-lived tokens that
    travel through other parties, such as the Kite login's state."""
    return encrypt(text)


def open_seal(token: str, max_age_s: int) -> str:
    """The text of a token from `seal`, or ExpiredSeal / InvalidSeal."""
    fernet = _fernet(credentials_key())
    try:
        return fernet.decrypt(token.encode(), ttl=max_age_s).decode()
    except InvalidToken:
        pass
    except (UnicodeError, ValueError):
        raise InvalidSeal() from None
    try:
        fernet.extract_timestamp(token.encode())  # verifies the signature: genuine, so too old
    except (InvalidToken, UnicodeError, ValueError):
        raise InvalidSeal() from None
    raise ExpiredSeal()
