"""Growing delays after failed logins, per user name and address, shared through Redis.

What is throttled is a *client that has failed*: the pair (user name, address).  A
client that has not failed for a user is never refused, so someone guessing from an
address cannot lock a user out from it, nor lock out the other users behind it.

Once a pair has ``free`` attempts behind it, its next one must wait ``base`` seconds
after its last, then twice that, and so on up to ``max_delay``; an attempt too early is
refused at once (429 with ``Retry-After``), so nobody waits on a thread or holds anything.
Guessing one user from many addresses is slowed too: every failure also counts for the
user, and a pair that has failed waits as long as the larger of the two counts says.  So
a distributed guesser gets one guess per fresh address, then the user's delay per address;
the user's own fresh clients still get in.

Every attempt is counted *before* PAM runs, in one Lua script that also checks the
delay, so twenty parallel guesses cannot all slip through while the first ones are
still being checked; a success wipes the pair and takes its failures off the user; an
attempt that was never checked (PAM busy) is given back.  Counters are forgotten
``window`` seconds after the last attempt.

IPv6 addresses count per /64: one host usually holds a whole /64.
"""

from __future__ import annotations

import ipaddress
import math

from twisted.internet.interfaces import IReactorTime

from kimchi.bus.twisted import RedisClient
from kimchi.errors import TooManyRequests

# KEYS: the pair's counter, the user's. ARGV: now, free, base, max delay, window,
# count (1) or just look (0).  Returns the seconds to wait (as a string: Lua numbers would
# be truncated), "0" if none.
_ATTEMPT = """
local now, free = tonumber(ARGV[1]), tonumber(ARGV[2])
local base, maxd, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function delay(count)
  if count < free then return 0 end
  return math.min(maxd, base * 2 ^ (count - free))
end
local function read(k)
  local v = redis.call('HMGET', k, 'count', 'last')
  local count, last = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if now - last >= window + delay(count) then count = 0 end  -- quiet long enough: forgotten
  return count, last
end
local pair, last = read(KEYS[1])
local user = read(KEYS[2])
local wait = 0
if pair > 0 then  -- only a client that has failed (or is being checked) ever waits
  wait = last + delay(math.max(pair, user)) - now
end
if wait > 0 or ARGV[6] == '0' then return tostring(math.max(wait, 0)) end
local keep = math.ceil((window + delay(math.max(pair, user) + 1)) * 1000)
redis.call('HSET', KEYS[1], 'count', pair + 1, 'last', ARGV[1])
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('HSET', KEYS[2], 'count', user + 1, 'last', ARGV[1])
redis.call('PEXPIRE', KEYS[2], keep)
return '0'
"""

# KEYS: the pair's counter, the user's. ARGV[1]: "all" (a success: the pair's failures
# were its own, forget them) or "one" (an attempt never checked: give it back).
_FORGET = """
local take = 1
if ARGV[1] == 'all' then take = tonumber(redis.call('HGET', KEYS[1], 'count')) or 1 end
for _, k in ipairs(KEYS) do
  local left = (tonumber(redis.call('HGET', k, 'count')) or 0) - take
  if left <= 0 or (k == KEYS[1] and ARGV[1] == 'all') then redis.call('DEL', k)
  else redis.call('HSET', k, 'count', left) end
end
return 0
"""


def address_bucket(address: str) -> str:
    """The unit an address is counted in: itself for IPv4, its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginThrottle:
    """Count login attempts and say how long the next one must wait."""

    def __init__(self, redis: RedisClient, prefix: str, clock: IReactorTime, free: int = 5,
                 base: float = 1.0, max_delay: float = 300.0, window: float = 900.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.clock = clock
        self.free = free
        self.base = base
        self.max_delay = max_delay
        self.window = window

    def _keys(self, username: str, address: str) -> list[str]:
        # user names fold case here so "Root" and "root" share one counter
        user = username[:256].lower()
        return [f"{self.prefix}login-fail:pair:{address_bucket(address)}:{user}",
                f"{self.prefix}login-fail:user:{user}"]

    async def _run(self, username: str, address: str, count: bool) -> float:
        keys = self._keys(username, address)
        wait = await self.redis.call(
            "EVAL", _ATTEMPT, len(keys), *keys, repr(self.clock.seconds()), str(self.free),
            repr(self.base), repr(self.max_delay), repr(self.window), "1" if count else "0")
        return max(0.0, float(wait))

    async def attempt(self, username: str, address: str) -> None:
        """Count a login attempt, or refuse it: 429 (``KCHAUTH0008E``) with ``retry_after``.

        Call it before checking the password; then :meth:`succeeded` when it was right,
        :meth:`unchecked` when it could not be checked, nothing when it was wrong.
        """
        wait = await self._run(username, address, count=True)
        if wait > 0:
            raise TooManyRequests("KCHAUTH0008E", retry_after=max(1, math.ceil(wait)))

    async def retry_after(self, username: str, address: str) -> float:
        """Seconds before the next attempt may be made (0: now), without counting one."""
        return await self._run(username, address, count=False)

    async def succeeded(self, username: str, address: str) -> None:
        """A right password: forget this client's failures, here and in the user's count."""
        keys = self._keys(username, address)
        await self.redis.call("EVAL", _FORGET, len(keys), *keys, "all")

    async def unchecked(self, username: str, address: str) -> None:
        """The attempt counted last was never checked (PAM busy): give it back."""
        keys = self._keys(username, address)
        await self.redis.call("EVAL", _FORGET, len(keys), *keys, "one")
