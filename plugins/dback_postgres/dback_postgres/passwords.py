"""Guild passwords, stored as scrypt hashes that describe themselves.

A stored value reads ``scrypt$n=16384,r=8,p=1$<salt>$<hash>`` (salt and hash in unpadded
base64): the parameters travel with the hash, so they can be raised later without making
existing passwords unusable. Each guild gets its own random salt, so equal passwords do not
give equal hashes. The plain password is never stored or logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
#: Cost parameters of new hashes: about 16 MiB and some tens of milliseconds per check.
N, R, P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
#: Memory scrypt may use, with room above what the parameters need (128 * n * r bytes).
MAX_MEMORY = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEMORY, dklen=length
    )


def hash_password(password: str) -> str:
    """A new self-describing hash of ``password`` with a fresh salt."""
    if not password:
        raise ValueError("a password must not be empty")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, N, R, P, HASH_BYTES)
    return f"{SCHEME}$n={N},r={R},p={P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the ``stored`` hash, compared in constant time.

    Slow on purpose (that is what makes a stolen hash hard to guess from): call it in a
    thread, not on the event loop. A malformed stored value or a password that is not valid
    text never matches.
    """
    try:
        scheme, params, salt_text, digest_text = stored.split("$")
        if scheme != SCHEME:
            return False
        costs = dict(item.split("=", 1) for item in params.split(","))
        n, r, p = int(costs["n"]), int(costs["r"]), int(costs["p"])
        salt, expected = _unb64(salt_text), _unb64(digest_text)
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, KeyError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(actual, expected)
