"""Password hashing with Argon2id (memory-hard).

Production uses argon2-cffi's defaults (RFC 9106's low-memory profile).  A test
suite may switch to the cheapest parameters with :func:`use_test_profile`
(every hash carries its own parameters, so verification follows whichever
profile created the hash); never do that in a server.
"""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


def use_test_profile() -> None:
    """Cheap Argon2id parameters, for test suites only (a sign-in costs 1 ms instead of ~100 ms)."""
    global _HASHER
    _HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
