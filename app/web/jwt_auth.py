"""Bearer tokens (JWT) issued by a user service: verified against its published keys, read for the
accounts they may use.

Enabled by JWT_JWKS_URL, which then needs JWT_ISSUER and JWT_AUDIENCE. A token is accepted when its
`alg` is one of JWT_ALGORITHMS (public-key algorithms only: app.core.config), its `kid` names a key
of the issuer's JWKS (app.web.jwks) and the signature verifies with that key, `iss` and `aud` are
ours, and `exp` (required) and `nbf` hold within JWT_LEEWAY_S. The claim named by
JWT_ACCOUNTS_CLAIM (default `accounts`) lists the account ids the bearer may use, or is "*" (admin).

Plain module (no Flask): app.web.auth turns a VerifiedToken into the request's principal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import jwt
from jwt import PyJWK

from app.web.jwks import JwksKeys, UnknownKey

ALL_ACCOUNTS = "*"  # the accounts claim of an admin, as in API_KEYS


class InvalidToken(Exception):
    """A token the service does not accept. Its text is a reason safe to return to the client:
    it never quotes the token, its claims or key material."""


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    accounts: frozenset[str]  # {"*"}: every account
    usable_until: float  # epoch seconds (exp plus the leeway): a WebSocket opened with it closes then


# Most specific first: several of PyJWT's errors subclass others.
_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not valid yet"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidIssuerError, "token issuer not accepted"),
    (jwt.InvalidSignatureError, "token signature does not verify"),
    (jwt.InvalidAlgorithmError, "token algorithm not accepted"),
]


class TokenVerifier:
    def __init__(self, keys: JwksKeys, algorithms: tuple[str, ...], issuer: str, audience: str,
                 leeway_s: float, accounts_claim: str) -> None:
        self.keys = keys
        self.algorithms = algorithms
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.accounts_claim = accounts_claim

    @classmethod
    def from_settings(cls, settings) -> TokenVerifier | None:
        """The verifier the settings describe; None when JWT_JWKS_URL is unset (API keys only).
        A setting that would let foreign tokens through is a ValueError at start-up."""
        if not settings.jwt_jwks_url:
            return None
        if urlparse(settings.jwt_jwks_url).scheme not in ("http", "https"):
            raise ValueError(f"JWT_JWKS_URL: {settings.jwt_jwks_url!r} is not an http(s) URL")
        # Without both checks, a token the same user service issued for another service would pass.
        missing = [name for name, value in (("JWT_ISSUER", settings.jwt_issuer),
                                            ("JWT_AUDIENCE", settings.jwt_audience)) if not value]
        if missing:
            raise ValueError(f"JWT_JWKS_URL is set but {' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} "
                             "not: set the issuer and the audience the user service puts in its tokens for this service")
        if not settings.jwt_accounts_claim:
            raise ValueError("JWT_ACCOUNTS_CLAIM: name the claim listing a token's accounts (default accounts)")
        keys = JwksKeys(settings.jwt_jwks_url, min_refresh_s=settings.jwt_jwks_min_refresh_s,
                        max_age_s=settings.jwt_jwks_max_age_s)
        return cls(keys, settings.jwt_algorithms, settings.jwt_issuer, settings.jwt_audience,
                   settings.jwt_leeway_s, settings.jwt_accounts_claim)

    def verify(self, token: str) -> VerifiedToken:
        """The token's subject and accounts. InvalidToken when it is not accepted; KeysUnavailable
        when the issuer's keys were never fetched (the token may be fine: try again later)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms:  # before any key is looked up: `none` and HS* stop here
            raise InvalidToken("token algorithm not accepted")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token has no key id (kid)")
        try:
            jwk = self.keys.jwk(kid)
        except UnknownKey:
            raise InvalidToken("token signed by an unknown key") from None
        try:
            # A JWK naming its `alg` binds the token to it; one that does not fits the token's (RS256/PS256
            # on one RSA key), and PyJWK refuses a key of the wrong type for it.
            key = PyJWK(jwk, algorithm=None if jwk.get("alg") else alg)
        except Exception:
            raise InvalidToken("token algorithm does not fit its key") from None
        try:
            claims = jwt.decode(token, key=key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway_s, options={"require": ["exp", "iss", "aud"]})
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token has no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(_reason(exc)) from None
        return VerifiedToken(subject=str(claims.get("sub") or "-")[:64], accounts=self._accounts(claims),
                             usable_until=float(claims["exp"]) + self.leeway_s)

    def _accounts(self, claims: dict[str, Any]) -> frozenset[str]:
        if self.accounts_claim not in claims:
            raise InvalidToken(f"token has no {self.accounts_claim} claim")
        value = claims[self.accounts_claim]
        if value == ALL_ACCOUNTS:
            return frozenset({ALL_ACCOUNTS})
        # "*" inside a list is refused rather than read as admin: admin is said plainly or not at all.
        if isinstance(value, list) and all(isinstance(a, str) and a and a != ALL_ACCOUNTS for a in value):
            return frozenset(value)
        raise InvalidToken(f"token's {self.accounts_claim} claim is not a list of account ids or '*'")


def _reason(exc: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "malformed token"
