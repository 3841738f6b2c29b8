"""Encryption of stored secrets (Kite credentials, webhook secrets) with Fernet.

CREDENTIALS_KEY may hold several keys (MultiFernet): the first encrypts, every one decrypts, so a
new key can be put first while secrets stored under the old one are still read, until
`flask credentials rotate` has re-encrypted them all (app/stored_secrets.py).
"""
from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.core.config import credentials_keys

UNREADABLE = "stored secret cannot be decrypted: is it stored under a key that CREDENTIALS_KEY no longer lists?"


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _cipher() -> MultiFernet:
    """CREDENTIALS_KEY's keys as one cipher: encrypts with the first, decrypts with any."""
    return _fernet(credentials_keys())


def encrypt(plaintext: str) -> str:
    return _cipher().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _cipher().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # say what to check instead of a bare traceback (never the token)
        raise RuntimeError(UNREADABLE) from exc


def under_first_key(token: str) -> bool:
    """Whether `token` is encrypted under the key that encrypts (rotation leaves such tokens as they are)."""
    try:
        _fernet(credentials_keys()[:1]).extract_timestamp(token.encode())  # verifies the signature
    except (InvalidToken, UnicodeError, ValueError):
        return False
    return True


def rotate(token: str) -> str:
    """`token` encrypted under the first key (its plaintext and timestamp unchanged)."""
    try:
        return _cipher().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise RuntimeError(UNREADABLE) from exc


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
    fernet = _cipher()
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
