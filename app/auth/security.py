"""Passwords (argon2), random tokens and their hashes. Nothing secret is stored in clear."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

API_KEY_PREFIX = "sk-studio-"
MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; with no hash (an unknown e-mail) a hash is still computed, so
    the answer takes as long as for a known account and does not tell which e-mails exist."""
    if password_hash is None:
        _hasher.hash(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def new_api_key() -> tuple[str, str, str]:
    """Returns (full key shown once, prefix kept to recognise it, sha256 kept to check it).

    A key is 32 random bytes, so a fast hash is enough: there is nothing to brute-force.
    """
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[: len(API_KEY_PREFIX) + 6], sha256_hex(key)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
