"""Login sessions in Redis, so every daemon behind one address knows every session.

* The cookie holds 256 random bits; Redis holds only their SHA-256
  (:mod:`kimchid.auth.credentials`), so a dump of Redis opens no session.  That digest,
  the session's *handle*, names it in lists and revocations; it is not a credential.
* ``{p}session:<handle>`` — a hash: who (username, groups, role), created, last_seen,
  address, user_agent.  Its Redis TTL is the time it has left, so Redis forgets ended
  sessions by itself; the times in the hash, read with the injected clock, decide.
* ``{p}user-sessions:<username>`` — the handles of a user's sessions, to list and end
  them all (members whose session has gone are dropped when listed).

A session ends ``idle`` seconds after it was last used, or ``max_age`` seconds after the
login, whichever comes first.  Use refreshes ``last_seen`` at most every ``idle / 20``
seconds (a minute at most), so reads do not each cost a write.

Cross-site requests are refused by the Origin check (:func:`kimchid.auth.policy.
origin_allowed`) and ``SameSite=Strict``, so sessions carry no CSRF token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime

from kimchi import bus
from kimchi.bus.twisted import RedisClient
from kimchi.errors import NotFound
from kimchid.auth.credentials import digest, new_secret
from kimchid.auth.policy import Identity

COOKIE_NAME = "kimchi_session"
EXPIRES_HEADER = "Session-Expires-On"
_MAX_COOKIE = 128  # a longer cookie is not one of ours: no Redis round trip for it

# KEYS: session, user's set. ARGV: ttl ms, set ttl ms, handle, field, value, ...
_CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""
# KEYS: session. ARGV: last_seen, ttl ms.  Never brings back a session ended meanwhile.
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# KEYS: session, user's set. ARGV: handle.
_DELETE = """
redis.call('SREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
"""


@dataclass(frozen=True)
class Session:
    """One login: who, since when, and until when if nothing happens."""

    handle: str  # SHA-256 of the cookie: names the session, opens nothing
    identity: Identity
    created: float
    last_seen: float
    expires_on: float  # min(last_seen + idle, created + max_age)
    address: str = ""
    user_agent: str = ""

    @property
    def expires_on_header(self) -> str:
        """The value of ``Session-Expires-On``: ISO-8601 UTC, like every time in the API."""
        return bus.now_iso(self.expires_on)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.handle,
            **self.identity.to_json(),
            "created": bus.now_iso(self.created),
            "last_seen": bus.now_iso(self.last_seen),
            "expires_on": self.expires_on_header,
            "address": self.address,
            "user_agent": self.user_agent,
        }


def session_cookie(secret: str, secure: bool = True) -> str:
    """The ``Set-Cookie`` value that hands ``secret`` to the browser.

    No ``Max-Age``: the browser drops it when it closes; Redis ends it before that.
    ``secure`` is False only where kimchid serves plain HTTP (tests, ``tls = false``).
    """
    flags = "; Secure" if secure else ""
    return f"{COOKIE_NAME}={secret}; Path=/; HttpOnly; SameSite=Strict{flags}"


def cleared_cookie(secure: bool = True) -> str:
    """The ``Set-Cookie`` value of a logout: the browser forgets the cookie."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{flags}"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class SessionStore:
    """Create, find, refresh and end sessions (``idle`` and ``max_age`` in seconds)."""

    def __init__(self, redis: RedisClient, prefix: str, clock: IReactorTime,
                 idle: float, max_age: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.clock = clock
        self.idle = idle
        self.max_age = max_age
        self.touch_every = min(60.0, idle / 20)

    def _key(self, handle: str) -> str:
        return f"{self.prefix}session:{handle}"

    def _user_key(self, username: str) -> str:
        return f"{self.prefix}user-sessions:{username}"

    def _expires_on(self, created: float, last_seen: float) -> float:
        return min(last_seen + self.idle, created + self.max_age)

    @staticmethod
    def _ttl_ms(until: float, now: float) -> int:
        return max(1, int((until - now) * 1000) + 1000)  # a second's grace: the hash decides

    async def create(self, who: Identity, address: str = "",
                     user_agent: str = "") -> tuple[str, Session]:
        """A new session for ``who``: the cookie value (give it out once) and the session."""
        secret = new_secret()
        handle = digest(secret)
        now = self.clock.seconds()
        s = Session(handle, who, now, now, self._expires_on(now, now), address[:64],
                    user_agent[:256])
        fields = {
            "username": who.username, "groups": json.dumps(list(who.groups)),
            "role": who.role, "created": repr(now), "last_seen": repr(now),
            "address": s.address, "user_agent": s.user_agent,
        }
        flat = [x for kv in fields.items() for x in kv]
        await self.redis.call(
            "EVAL", _CREATE, 2, self._key(handle), self._user_key(who.username),
            self._ttl_ms(s.expires_on, now), int(self.max_age * 1000) + 1000, handle, *flat)
        return secret, s

    async def lookup(self, secret: str | None, touch: bool = True) -> Session | None:
        """The live session whose cookie is ``secret``, refreshed; None if there is none."""
        if not secret or len(secret) > _MAX_COOKIE:
            return None
        return await self._get(digest(secret), touch)

    async def get(self, handle: str) -> Session | None:
        """The live session named ``handle`` (from a list), not refreshed."""
        return await self._get(handle, touch=False)

    async def _get(self, handle: str, touch: bool) -> Session | None:
        flat = await self.redis.call("HGETALL", self._key(handle))
        h = bus.fields_of(flat or [])
        now = self.clock.seconds()
        try:
            who = Identity(h["username"], tuple(json.loads(h["groups"])), h["role"])
            created, last_seen = float(h["created"]), float(h["last_seen"])
        except (KeyError, ValueError, TypeError):
            if h:  # a damaged record: end it rather than trust it
                await self._delete(handle, h.get("username", ""))
            return None
        expires_on = self._expires_on(created, last_seen)
        if now >= expires_on:
            await self._delete(handle, who.username)
            return None
        if touch and now - last_seen >= self.touch_every:
            last_seen = now
            expires_on = self._expires_on(created, now)
            await self.redis.call("EVAL", _TOUCH, 1, self._key(handle), repr(now),
                                  self._ttl_ms(expires_on, now))
        return Session(handle, who, created, last_seen, expires_on, h.get("address", ""),
                       h.get("user_agent", ""))

    async def _delete(self, handle: str, username: str) -> bool:
        n = await self.redis.call("EVAL", _DELETE, 2, self._key(handle),
                                  self._user_key(username), handle)
        return bool(int(n))

    async def delete(self, secret: str | None) -> None:
        """Log out: end the session whose cookie is ``secret`` (nothing if there is none)."""
        if not secret or len(secret) > _MAX_COOKIE:
            return
        handle = digest(secret)
        username = await self.redis.call("HGET", self._key(handle), "username")
        await self._delete(handle, username or "")

    async def list_for(self, username: str) -> list[Session]:
        """The live sessions of ``username``, oldest first."""
        handles = await self.redis.call("SMEMBERS", self._user_key(username))
        out = []
        for handle in sorted(handles or []):
            s = await self._get(_text(handle), touch=False)
            if s is None:
                await self.redis.call("SREM", self._user_key(username), handle)
            elif s.identity.username == username:
                out.append(s)
        return sorted(out, key=lambda s: s.created)

    async def revoke(self, handle: str) -> None:
        """End the session named ``handle``; 404 (``KCHAUTH0013E``) if there is none."""
        s = await self.get(handle)
        if s is None or not await self._delete(handle, s.identity.username):
            raise NotFound("KCHAUTH0013E", id=handle)

    async def revoke_all(self, username: str) -> int:
        """End every session of ``username`` (their password or groups changed): how many."""
        handles = await self.redis.call("SMEMBERS", self._user_key(username))
        ended = 0
        for handle in handles or []:
            ended += await self._delete(_text(handle), username)
        return ended
