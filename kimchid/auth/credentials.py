"""Random credentials (session cookies, API tokens) and the only form in which they are stored.

A credential is 256 random bits.  Redis keeps its SHA-256 digest, never the value, so a
Redis dump, a replica or ``MONITOR`` does not hand out live cookies or tokens.  No salt or
slow hash is needed: nobody can guess 256 random bits, so the digest alone is enough.
"""

from __future__ import annotations

import hashlib
import secrets


def new_secret(prefix: str = "") -> str:
    """A fresh credential: ``prefix`` then 256 random bits, URL-safe base64 (43 characters)."""
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """The stored form of ``secret``: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()

