"""API keys: the API_KEYS specification parsed into principals, and what each may access."""
import hashlib

import pytest

from app.web.auth import find_principal, parse_api_keys


def test_parse_api_keys_spec():
    keys = parse_api_keys("k1=primary,secondary; k2=* ;bad;=x")
    assert keys == {"k1": frozenset({"primary", "secondary"}), "k2": frozenset({"*"})}
    assert find_principal("k2", keys).is_admin
    assert find_principal("k1", keys).may_access("secondary")
    assert not find_principal("k1", keys).may_access("other")
    assert find_principal("k3", keys) is None and find_principal("", keys) is None


def test_hashed_keys_need_no_plain_key_in_the_environment():
    digest = hashlib.sha256(b"the-plain-key").hexdigest()
    keys = parse_api_keys(f"SHA256:{digest.upper()}=primary;plain-key=*")
    assert keys == {f"sha256:{digest}": frozenset({"primary"}), "plain-key": frozenset({"*"})}
    principal = find_principal("the-plain-key", keys)
    assert principal.accounts == {"primary"} and principal.key_id == f"sha256:{digest[:8]}…"
    assert find_principal(digest, keys) is None and find_principal(f"sha256:{digest}", keys) is None
    assert find_principal("plain-key", keys).is_admin
    for bad in ("sha256:abc=primary", f"sha256:{digest[:-1]}g=primary"):
        with pytest.raises(ValueError, match="64 hex digits"):
            parse_api_keys(bad)
