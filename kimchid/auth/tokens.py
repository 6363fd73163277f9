"""API tokens: credentials for scripts (``Authorization: Bearer kch_...``), issued by an admin.

A token acts as the user it was issued for, with that user's groups and role as they are
when it is used.  Its value is shown once, when it is created; Redis keeps its SHA-256
only (:mod:`kimchid.auth.credentials`).

* ``{p}token:<sha256>`` — a hash: id, name, username, created_by, created, expires
  ("" for never).  Its Redis TTL follows ``expires``, so Redis forgets it by itself.
* ``{p}tokens`` — id -> sha256, to list and revoke by id.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime

from kimchi import bus
from kimchi.bus.twisted import RedisClient
from kimchi.errors import InvalidRequest, NotFound
from kimchid.auth.credentials import digest, new_secret

TOKEN_PREFIX = "kch_"  # lets secret scanners and people recognise a kimchi token
MAX_NAME = 64
MAX_LIFETIME = 10 * 366 * 86400.0
#: a token's name: 1 to MAX_NAME characters, none a control character, a line or paragraph
#: separator or half a surrogate pair (the schema's pattern and the check here)
NAME_PATTERN = f"^[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\ud800-\\udfff]{{1,{MAX_NAME}}}$"
_MAX_BEARER = 128

# KEYS: token, index. ARGV: id, digest, ttl ms (0: none), field, value, ...
_CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
# KEYS: index. ARGV: id, token key prefix.
_REVOKE = """
local d = redis.call('HGET', KEYS[1], ARGV[1])
if not d then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', ARGV[2] .. d)
return 1
"""


@dataclass(frozen=True)
class ApiToken:
    """What is known of a token: everything but its value."""

    id: str
    name: str
    username: str  # the token acts as this user
    created_by: str
    created: float
    expires: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "username": self.username,
            "created_by": self.created_by, "created": bus.now_iso(self.created),
            "expires": bus.now_iso(self.expires) if self.expires is not None else None,
        }


class TokenStore:
    """Issue, list, revoke and check API tokens."""

    def __init__(self, redis: RedisClient, prefix: str, clock: IReactorTime) -> None:
        self.redis = redis
        self.prefix = prefix
        self.clock = clock

    @property
    def _index(self) -> str:
        return self.prefix + "tokens"

    def _key(self, token_digest: str) -> str:
        return f"{self.prefix}token:{token_digest}"

    async def create(self, name: str, username: str, created_by: str,
                     expires_in: float | None = None) -> tuple[str, ApiToken]:
        """A new token for ``username``: its value (show it once, it is not kept) and record.

        ``expires_in`` seconds from now, None for a token that lasts until revoked.
        Checking that ``username`` exists is the caller's (it knows NSS).
        """
        if not re.fullmatch(NAME_PATTERN, name):
            raise InvalidRequest("KCHAUTH0011E",
                                 reason=f"name must be 1-{MAX_NAME} printable characters")
        if expires_in is not None and not 0 < expires_in <= MAX_LIFETIME:
            raise InvalidRequest("KCHAUTH0011E",
                                 reason="expires_in must be more than 0 and at most 10 years")
        now = self.clock.seconds()
        value = new_secret(TOKEN_PREFIX)
        token_digest = digest(value)
        token = ApiToken(secrets.token_hex(6), name, username, created_by, now,
                         now + expires_in if expires_in is not None else None)
        fields = {
            "id": token.id, "name": name, "username": username, "created_by": created_by,
            "created": repr(now), "expires": repr(token.expires) if token.expires else "",
        }
        ttl_ms = int(expires_in * 1000) + 1000 if expires_in is not None else 0
        await self.redis.call("EVAL", _CREATE, 2, self._key(token_digest), self._index,
                              token.id, token_digest, ttl_ms,
                              *[x for kv in fields.items() for x in kv])
        return value, token

    async def _get(self, token_digest: str) -> ApiToken | None:
        h = bus.fields_of(await self.redis.call("HGETALL", self._key(token_digest)) or [])
        try:
            token = ApiToken(h["id"], h["name"], h["username"], h["created_by"],
                             float(h["created"]),
                             float(h["expires"]) if h["expires"] else None)
        except (KeyError, ValueError):
            return None
        if token.expires is not None and self.clock.seconds() >= token.expires:
            await self.redis.call("EVAL", _REVOKE, 1, self._index, token.id,
                                  self.prefix + "token:")
            return None
        return token

    async def lookup(self, bearer: str | None) -> ApiToken | None:
        """The live token whose value is ``bearer``, None if there is none (or it expired)."""
        if not bearer or len(bearer) > _MAX_BEARER or not bearer.startswith(TOKEN_PREFIX):
            return None
        return await self._get(digest(bearer))

    async def list(self, username: str | None = None) -> list[ApiToken]:
        """The live tokens (of ``username`` only, if given), oldest first; never a value."""
        flat = await self.redis.call("HGETALL", self._index)
        out = []
        for token_id, token_digest in bus.fields_of(flat or []).items():
            token = await self._get(token_digest)
            if token is None:  # expired or gone: drop it from the index too
                await self.redis.call("HDEL", self._index, token_id)
            elif username is None or token.username == username:
                out.append(token)
        return sorted(out, key=lambda t: (t.created, t.id))

    async def revoke(self, token_id: str) -> None:
        """Revoke token ``token_id`` at once; 404 (``KCHAUTH0010E``) if there is none."""
        found = await self.redis.call("EVAL", _REVOKE, 1, self._index, token_id,
                                      self.prefix + "token:")
        if not int(found):
            raise NotFound("KCHAUTH0010E", id=token_id)
