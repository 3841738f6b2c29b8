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
