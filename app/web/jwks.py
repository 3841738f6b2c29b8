"""A token issuer's public signing keys, fetched from its JWKS URL and cached by key id (`kid`).

Plain module (no Flask). The key set is fetched on first use (never at import or start-up), again
once it is `max_age_s` old (so a key the issuer withdrew stops working), and when a token names a
`kid` the set lacks (the issuer rotated its keys) — that refetch at most once per `min_refresh_s`,
whatever tokens arrive, so made-up `kid`s cannot make the service hammer the issuer. A failed fetch
keeps the last good set (the issuer being down does not log everyone out) and is not retried for
`min_refresh_s` either.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import requests
from jwt import PyJWK

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 5.0


class UnknownKey(LookupError):
    """No key of the set has this `kid`, even after a refetch."""


class KeysUnavailable(RuntimeError):
    """The set was never fetched: the issuer's JWKS endpoint has not answered yet."""


class JwksKeys:
    def __init__(self, url: str, min_refresh_s: float, max_age_s: float,
                 timeout_s: float = FETCH_TIMEOUT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.min_refresh_s = min_refresh_s
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] | None = None  # kid → JWK, the last good set
        self._fetched_at = 0.0  # last good fetch
        self._failed_at: float | None = None  # last failed fetch
        self._refetched_at: float | None = None  # last refetch for an unknown kid
        self._lock = threading.Lock()  # one fetch at a time

    def jwk(self, kid: str) -> dict[str, Any]:
        """The JWK with this `kid`. UnknownKey, or KeysUnavailable when no set was ever fetched."""
        keys = self._keys
        if keys is None or kid not in keys:
            with self._lock:  # nothing to answer with but a fetch: wait for it (or for another's)
                self._update(kid)
        elif self._clock() - self._fetched_at >= self.max_age_s and self._lock.acquire(blocking=False):
            try:  # one request refreshes an old set; the others go on with it meanwhile
                self._update(kid)
            finally:
                self._lock.release()
        keys = self._keys
        if keys is None:
            raise KeysUnavailable("the token issuer's keys could not be fetched")
        if kid not in keys:
            raise UnknownKey(kid)
        return keys[kid]

    def _update(self, kid: str) -> None:
        """Under the lock: fetch a missing or old set, or one without `kid` (at most once per min refresh)."""
        now = self._clock()
        if self._keys is None or now - self._fetched_at >= self.max_age_s:
            self._refresh(now)
        elif kid not in self._keys and not self._recently(self._refetched_at, now):
            self._refetched_at = now
            self._refresh(now)

    def _recently(self, moment: float | None, now: float) -> bool:
        return moment is not None and now - moment < self.min_refresh_s

    def _refresh(self, now: float) -> None:
        if self._recently(self._failed_at, now):
            return
        try:
            keys = self._fetch()
        except (requests.RequestException, ValueError) as exc:
            self._failed_at = now
            # The URL and the kind of failure only: nothing the issuer answered is logged.
            log.warning("JWKS fetch failed; keeping the last good key set",
                        extra={"jwks_url": self.url, "error": type(exc).__name__,
                               "keys_kept": len(self._keys or {})})
            return
        self._keys, self._fetched_at, self._failed_at = keys, now, None

    def _fetch(self) -> dict[str, dict[str, Any]]:
        # No redirects: the keys come from the configured URL and nowhere else.
        response = requests.get(self.url, timeout=self.timeout_s, allow_redirects=False,
                                headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise ValueError(f"JWKS endpoint answered HTTP {response.status_code}")
        body = response.json()
        entries = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise ValueError("JWKS document has no 'keys' list")
        keys = {jwk["kid"]: jwk for jwk in entries if _usable_signing_key(jwk)}
        if not keys:
            raise ValueError("JWKS document has no usable signing key")
        return keys


def _usable_signing_key(jwk: Any) -> bool:
    """A public signing key with a `kid` that PyJWT can load. Symmetric (`oct`) keys are skipped:
    a published secret is no secret, and HS algorithms are never accepted anyway."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
        return False
    if jwk.get("kty") == "oct" or jwk.get("use", "sig") != "sig":
        return False
    try:
        PyJWK(jwk)
    except Exception:  # PyJWKError, or whatever a malformed key makes the loader raise: skip that key
        return False
    return True
