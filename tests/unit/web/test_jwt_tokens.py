"""Bearer tokens checked against a real JWKS endpoint on loopback (tests/support/jwks.py): what is
accepted, every way a token is refused, and the key cache (one refetch per unknown kid, the last good
set kept when the issuer is down). The same over REST and WebSockets: tests/integration/web/test_jwt_auth.py."""
from __future__ import annotations

import time

import jwt
import pytest

from app.core.config import Settings, parse_jwt_algorithms
from app.core.logs import redact
from app.web.jwks import KeysUnavailable
from app.web.jwt_auth import InvalidToken, TokenVerifier
from tests.support.jwks import TokenIssuer, signing_key


@pytest.fixture(scope="module")
def issuer():
    issuer = TokenIssuer()
    yield issuer
    issuer.stop()


@pytest.fixture
def verifier_for(issuer):
    """verifier_for(**settings) → a verifier with an empty key cache, pointed at the issuer."""
    issuer.failing = False
    issuer.published.pop("rsa-2", None)
    return lambda **changes: TokenVerifier.from_settings(issuer.settings(Settings(), **changes))


@pytest.fixture
def verifier(verifier_for):
    return verifier_for()


@pytest.mark.parametrize("accounts, expected", [
    (["primary"], {"primary"}),
    (["primary", "other", "third"], {"primary", "other", "third"}),
    ("*", {"*"}),
    ([], set()),
])
def test_a_valid_token_gives_its_accounts(issuer, verifier, accounts, expected):
    for kid in ("rsa-1", "ec-1"):  # RS256 and ES256, the default JWT_ALGORITHMS
        verified = verifier.verify(issuer.token(accounts, kid=kid))
        assert verified.accounts == expected and verified.subject == "user-42"
        assert verified.usable_until > time.time()


def test_the_accounts_claim_is_configurable(issuer, verifier_for):
    verifier = verifier_for(jwt_accounts_claim="https://example.test/accounts")
    token = issuer.token(accounts=None, **{"https://example.test/accounts": ["other"]})
    assert verifier.verify(token).accounts == {"other"}


@pytest.mark.parametrize("make, reason", [
    (lambda i: i.token(aud="another-service"), "token audience not accepted"),
    (lambda i: i.token(iss="https://evil.example.test"), "token issuer not accepted"),
    (lambda i: i.token(ttl_s=-5), "token expired"),
    (lambda i: i.token(nbf=int(time.time()) + 60), "token not valid yet"),
    (lambda i: i.token(exp=None), "token has no exp claim"),
    (lambda i: i.token(aud=None), "token has no aud claim"),
    (lambda i: i.unsigned_token(), "token algorithm not accepted"),
    (lambda i: i.hs256_with_public_key(), "token algorithm not accepted"),
    (lambda i: i.token(alg="RS512"), "token algorithm not accepted"),  # not in the default JWT_ALGORITHMS
    (lambda i: i.token(kid="ec-1")[:-4] + "AAAA", "token signature does not verify"),
    (lambda i: i.token(kid="rsa-1")[:-6] + "AAAAAA", "token signature does not verify"),
    (lambda i: i.token(accounts=None), "token has no accounts claim"),
    (lambda i: i.token(accounts=["primary", "*"]), "token's accounts claim is not a list of account ids or '*'"),
    (lambda i: i.token(accounts="primary"), "token's accounts claim is not a list of account ids or '*'"),
    (lambda i: i.token(accounts=[1, 2]), "token's accounts claim is not a list of account ids or '*'"),
    (lambda i: "not.a.jwt", "malformed token"),
    (lambda i: "", "malformed token"),
])
def test_refused_tokens_say_why_without_leaking(issuer, verifier, make, reason):
    token = make(issuer)
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token)
    assert str(refused.value) == reason
    assert "BEGIN" not in reason and (not token or token not in reason)


def test_an_rs256_key_is_not_an_es256_key(issuer, verifier):
    # ES256 is allowed, but the key `rsa-1` names is an RSA key: refused, not tried as EC.
    token = jwt.encode(issuer.claims(), signing_key("ec-1"), algorithm="ES256", headers={"kid": "rsa-1"})
    with pytest.raises(InvalidToken, match="token algorithm"):
        verifier.verify(token)


def test_leeway_accepts_a_token_just_expired(issuer, verifier_for):
    token = issuer.token(ttl_s=-5)
    assert verifier_for(jwt_leeway_s=30).verify(token).usable_until > time.time()
    with pytest.raises(InvalidToken, match="expired"):
        verifier_for(jwt_leeway_s=0).verify(token)


def test_keys_are_cached_and_an_unknown_kid_refetches_once(issuer, verifier):
    before = issuer.fetches
    for _ in range(3):
        verifier.verify(issuer.token())
    assert issuer.fetches == before + 1  # cached after the first

    for _ in range(3):
        with pytest.raises(InvalidToken, match="unknown key"):
            verifier.verify(issuer.token(kid="rsa-2"))
    assert issuer.fetches == before + 2  # one refetch, then the unknown kid is refused from the cache


def test_a_rotated_key_is_picked_up_once_the_minimum_refresh_has_passed(issuer, verifier_for):
    verifier = verifier_for(jwt_jwks_min_refresh_s=0.3)
    verifier.verify(issuer.token())
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(issuer.token(kid="rsa-2"))  # refetched: not published yet
    issuer.published["rsa-2"] = signing_key("rsa-2")  # the issuer rotates
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(issuer.token(kid="rsa-2"))  # too soon to ask again
    time.sleep(0.35)
    assert verifier.verify(issuer.token(kid="rsa-2")).accounts == {"primary"}


def test_a_withdrawn_key_stops_working_once_the_set_is_old(issuer, verifier_for):
    verifier = verifier_for(jwt_jwks_max_age_s=0.3)
    token = issuer.token(kid="ec-1")
    verifier.verify(token)
    withdrawn = issuer.published.pop("ec-1")
    try:
        assert verifier.verify(token).accounts == {"primary"}  # the cached set is still young
        time.sleep(0.35)
        with pytest.raises(InvalidToken, match="unknown key"):
            verifier.verify(token)
    finally:
        issuer.published["ec-1"] = withdrawn


def test_the_last_good_keys_are_kept_when_the_issuer_fails(issuer, verifier_for):
    # Max age 0: every verification wants a fresh set, so each one meets the failing endpoint.
    verifier = verifier_for(jwt_jwks_max_age_s=0, jwt_jwks_min_refresh_s=0)
    verifier.verify(issuer.token())
    issuer.failing = True
    before = issuer.fetches
    assert verifier.verify(issuer.token(kid="ec-1")).accounts == {"primary"}
    assert issuer.fetches > before  # it did try


def test_the_last_good_keys_are_kept_when_the_issuer_is_gone(verifier_for):
    issuer = TokenIssuer()
    verifier = TokenVerifier.from_settings(issuer.settings(Settings(), jwt_jwks_max_age_s=0,
                                                           jwt_jwks_min_refresh_s=0))
    verifier.verify(issuer.token())
    issuer.stop()  # connections refused from now on
    assert verifier.verify(issuer.token()).accounts == {"primary"}


def test_no_keys_ever_fetched_is_unavailable_not_invalid(issuer, verifier_for):
    issuer.failing = True
    verifier = verifier_for()
    with pytest.raises(KeysUnavailable):
        verifier.verify(issuer.token())
    fetches = issuer.fetches
    with pytest.raises(KeysUnavailable):  # within JWT_JWKS_MIN_REFRESH_S: not asked again
        verifier.verify(issuer.token())
    assert issuer.fetches == fetches


def test_settings_that_would_let_foreign_tokens_through_stop_the_start():
    assert TokenVerifier.from_settings(Settings(jwt_jwks_url="")) is None
    with pytest.raises(ValueError, match="JWT_ISSUER and JWT_AUDIENCE"):
        TokenVerifier.from_settings(Settings(jwt_jwks_url="https://users.example.test/jwks.json"))
    with pytest.raises(ValueError, match="JWT_AUDIENCE"):
        TokenVerifier.from_settings(Settings(jwt_jwks_url="https://u.test/jwks", jwt_issuer="https://u.test"))
    with pytest.raises(ValueError, match="http"):
        TokenVerifier.from_settings(Settings(jwt_jwks_url="file:///etc/passwd", jwt_issuer="i", jwt_audience="a"))


@pytest.mark.parametrize("text", ["none", "HS256", "RS256,HS512", "rs256", "", " , "])
def test_jwt_algorithms_are_public_key_ones(text):
    with pytest.raises(ValueError, match="JWT_ALGORITHMS"):
        parse_jwt_algorithms(text)


def test_jwt_algorithms_parse():
    assert parse_jwt_algorithms("RS256, ES256,RS256,EdDSA") == ("RS256", "ES256", "EdDSA")


def test_logs_redact_bearer_tokens_and_url_tokens(issuer):
    token = issuer.token()
    for line in (f"Authorization: Bearer {token}", f'{{"authorization": "Bearer {token}"}}',
                 f"GET /ws/orders/primary?access_token={token} HTTP/1.1",
                 f"GET /ws/ticks?underlying=nifty&api_key=k-123&access_token={token}",
                 f"the token {token} was refused"):
        redacted = redact(line)
        assert token not in redacted and token.split(".")[1] not in redacted, redacted
        assert "k-123" not in redacted
