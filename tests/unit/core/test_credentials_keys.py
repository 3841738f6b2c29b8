"""CREDENTIALS_KEY: several comma-separated keys, the first encrypting and all decrypting; unset, a
clear error (never a key made up on the spot); malformed, an error that does not echo the key."""
from __future__ import annotations

import time

import pytest
from cryptography.fernet import Fernet

from app.core import config, crypto

A, B = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_keys_are_comma_separated_and_the_first_encrypts(settings_override):
    assert config.parse_credentials_keys(f" {B} ,{A},, ") == (B, A)
    settings_override(credentials_keys=(B, A))
    token = crypto.encrypt("s3cret")
    assert Fernet(B.encode()).decrypt(token.encode()) == b"s3cret"
    assert crypto.under_first_key(token)
    assert config.credentials_key() == B


def test_every_key_decrypts_and_rotate_moves_a_secret_to_the_first(settings_override):
    settings_override(credentials_keys=(A,))
    old = crypto.encrypt("s3cret")
    sealed = crypto.seal("state")
    settings_override(credentials_keys=(B, A))
    assert crypto.decrypt(old) == "s3cret" and not crypto.under_first_key(old)
    assert crypto.open_seal(sealed, max_age_s=60) == "state"
    rotated = crypto.rotate(old)
    assert crypto.under_first_key(rotated)
    settings_override(credentials_keys=(B,))
    assert crypto.decrypt(rotated) == "s3cret"
    with pytest.raises(RuntimeError, match="no longer lists") as caught:
        crypto.decrypt(old)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(crypto.InvalidSeal):
        crypto.open_seal(sealed, max_age_s=60)


def test_a_seal_under_an_older_key_that_expired_is_expired_not_forged(settings_override):
    settings_override(credentials_keys=(B, A))
    old_seal = Fernet(A.encode()).encrypt_at_time(b"state", int(time.time()) - 3600).decode()
    with pytest.raises(crypto.ExpiredSeal):
        crypto.open_seal(old_seal, max_age_s=600)


def test_unset_is_an_error_that_says_how_to_make_one(settings_override):
    settings_override(credentials_keys=())
    with pytest.raises(config.MissingCredentialsKey) as caught:
        config.require_credentials_key()
    assert "CREDENTIALS_KEY is not set" in str(caught.value)
    assert config.CREATE_CREDENTIALS_KEY in str(caught.value)
    with pytest.raises(config.MissingCredentialsKey):
        crypto.encrypt("s3cret")


def test_a_malformed_key_names_its_position_and_never_its_text():
    with pytest.raises(ValueError) as caught:
        config.parse_credentials_keys(f"{A},not-a-key-at-all")
    assert "key 2 of 2" in str(caught.value)
    assert "not-a-key-at-all" not in str(caught.value) and A not in str(caught.value)
