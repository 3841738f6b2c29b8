"""A token issuer for the tests: real RSA and EC keys, their JWKS on a loopback HTTP server, signed tokens.

Stands in for the user service the README tells operators to wire JWT_JWKS_URL to.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.ports import free_port

ISSUER = "https://users.example.test"
AUDIENCE = "ticker-service"


@functools.cache
def signing_key(name: str):
    """One private key per name for the whole run (RSA generation takes a moment)."""
    if name.startswith("ec"):
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(kid: str, key) -> dict:
    algorithm = ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
    return {**algorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Publishes `rsa-1` (RS256) and `ec-1` (ES256) at `jwks_url`; counts the fetches; `failing`
    answers 503. `stop()` takes the endpoint down altogether (connections refused)."""

    def __init__(self) -> None:
        self.published = {"rsa-1": signing_key("rsa-1"), "ec-1": signing_key("ec-1")}
        self.fetches = 0
        self.failing = False
        self.port = free_port()
        self.jwks_url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                issuer.fetches += 1
                if issuer.failing or self.path != "/.well-known/jwks.json":
                    self.send_response(503 if issuer.failing else 404)
                    self.end_headers()
                    return
                body = json.dumps({"keys": [public_jwk(kid, key) for kid, key in issuer.published.items()]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="jwks-server")
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def settings(self, base, **changes):
        """`base` settings pointed at this issuer (leeway 0: the tests' clocks are one)."""
        return replace(base, **{"jwt_jwks_url": self.jwks_url, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE,
                                "jwt_leeway_s": 0.0, **changes})

    @staticmethod
    def claims(accounts=("primary",), ttl_s: float = 300, **changes) -> dict:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "iat": now, "exp": now + ttl_s,
                  "accounts": list(accounts) if isinstance(accounts, (list, tuple)) else accounts}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}  # None: leave the claim out

    def token(self, accounts=("primary",), kid: str = "rsa-1", alg: str | None = None,
              ttl_s: float = 300, **claims) -> str:
        key = signing_key(kid)
        alg = alg or ("ES256" if kid.startswith("ec") else "RS256")
        return jwt.encode(self.claims(accounts, ttl_s, **claims), key, algorithm=alg, headers={"kid": kid})

    def unsigned_token(self, accounts=("primary",), kid: str = "rsa-1") -> str:
        """`alg: none`, no signature."""
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
        return f"{header}.{_b64(json.dumps(self.claims(accounts)).encode())}."

    def hs256_with_public_key(self, accounts=("primary",), kid: str = "rsa-1") -> str:
        """The classic confusion attack: HMAC-signed with the issuer's *public* key as the secret."""
        public_pem = signing_key(kid).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        signing_input = (f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}."
                         f"{_b64(json.dumps(self.claims(accounts)).encode())}")
        signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"
