"""Passwords (scrypt, stdlib) and bearer secrets (random, stored only as SHA-256)."""

import base64
import functools
import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    salt = base64.b64decode(salt_b64)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


@functools.cache
def dummy_hash() -> str:
    """Verifying against this when the user does not exist keeps the timing the same (made at
    the first such login, not at import: scrypt is a master's slowest start-up step)."""
    return hash_password(secrets.token_urlsafe(16))


def new_secret(prefix: str) -> str:
    """A bearer secret; the prefix tells a reader what kind it is (user, node, join)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
