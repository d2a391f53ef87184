"""Passwords and tokens (§1.3, §1.4): salted PBKDF2 hashes (low cost: tests create many users) and HS256 JWTs."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import Any

import jwt

__all__ = ["TokenError", "hash_password", "issue_token", "check_password", "decode_token"]

_ITERATIONS = 1000
ACCESS_SECONDS = 24 * 3600
REFRESH_SECONDS = 7 * ACCESS_SECONDS


class TokenError(Exception):
    """A bearer token was refused: ``code`` is INVALID_CREDENTIALS or TOKEN_EXPIRED."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(message)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _ITERATIONS)
    return f"pbkdf2${_ITERATIONS}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    _, iterations, salt, digest = stored.split("$")
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(got.hex(), digest)


def issue_token(
    secret: str,
    user_id: str,
    role: str,
    email: str | None,
    token_type: str = "access",
    lifetime: int | None = None,
) -> tuple[str, int]:
    """A signed JWT and its expiry (unix seconds)."""
    now = int(time.time())
    if lifetime is None:
        lifetime = ACCESS_SECONDS if token_type == "access" else REFRESH_SECONDS
    exp = now + lifetime
    claims = {
        "sub": user_id,
        "iss": "kalamdb",
        "exp": exp,
        "iat": now,
        "email": email,
        "role": role,
        "token_type": token_type,
    }
    return jwt.encode(claims, secret, algorithm="HS256"), exp


def decode_token(secret: str, token: str, token_type: str = "access") -> dict[str, Any]:
    """Verify signature, expiry (60 s leeway), ``iat`` not in the future and the token type."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], leeway=60, options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("TOKEN_EXPIRED", "Token expired") from None
    except jwt.PyJWTError:
        raise TokenError("INVALID_CREDENTIALS", "Invalid credentials") from None
    if claims.get("iat", 0) > time.time() + 60 or claims.get("token_type", "access") != token_type:
        raise TokenError("INVALID_CREDENTIALS", "Invalid credentials")
    return claims
