"""Growing delays after failed logins, per user name and per address, shared through Redis.

Every attempt is counted *before* PAM runs, in one Lua script that also checks the
delay, so twenty parallel guesses cannot all slip through while the first ones are
still being checked; a success then wipes the slate.  Once a user name or an address
has ``free`` attempts behind it, the next one must wait ``base`` seconds after the last,
then twice that, and so on up to ``max_delay``; an attempt too early is refused at once
(429 with ``Retry-After``), so nobody waits on a thread or holds anything.  Counters are
forgotten ``window`` seconds after the last attempt.

IPv6 addresses count per /64: one host usually holds a whole /64.
"""

from __future__ import annotations

import ipaddress
import math

from twisted.internet.interfaces import IReactorTime

from kimchid.adapters.redis import RedisClient
from kimchid.errors import TooManyRequests

# KEYS: the counters. ARGV: now, free, base, max delay, window, count (1) or just look (0).
# Returns the seconds to wait (as a string: Lua numbers would be truncated), "0" if none.
_ATTEMPT = """
local now, free = tonumber(ARGV[1]), tonumber(ARGV[2])
local base, maxd, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function delay(count)
  if count < free then return 0 end
  return math.min(maxd, base * 2 ^ (count - free))
end
local counts, wait = {}, 0
for i, k in ipairs(KEYS) do
  local v = redis.call('HMGET', k, 'count', 'last')
  local count, last = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if now - last >= window + delay(count) then count = 0 end  -- quiet long enough: forgotten
  counts[i] = count
  local w = last + delay(count) - now
  if count > 0 and w > wait then wait = w end
end
if wait > 0 or ARGV[6] == '0' then return tostring(wait) end
for i, k in ipairs(KEYS) do
  redis.call('HSET', k, 'count', counts[i] + 1, 'last', ARGV[1])
  redis.call('PEXPIRE', k, math.ceil((window + delay(counts[i] + 1)) * 1000))
end
return '0'
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
        return [f"{self.prefix}login-fail:user:{username[:256].lower()}",
                f"{self.prefix}login-fail:addr:{address_bucket(address)}"]

    async def _run(self, username: str, address: str, count: bool) -> float:
        keys = self._keys(username, address)
        wait = await self.redis.call(
            "EVAL", _ATTEMPT, len(keys), *keys, repr(self.clock.seconds()), str(self.free),
            repr(self.base), repr(self.max_delay), repr(self.window), "1" if count else "0")
        return max(0.0, float(wait))

    async def attempt(self, username: str, address: str) -> None:
        """Count a login attempt, or refuse it: 429 (``KCHAUTH0008E``) with ``retry_after``.

        Call it before checking the password; call :meth:`succeeded` when it was right.
        """
        wait = await self._run(username, address, count=True)
        if wait > 0:
            raise TooManyRequests("KCHAUTH0008E", retry_after=max(1, math.ceil(wait)))

    async def retry_after(self, username: str, address: str) -> float:
        """Seconds before the next attempt may be made (0: now), without counting one."""
        return await self._run(username, address, count=False)

    async def succeeded(self, username: str, address: str) -> None:
        """A right password: forget the failures of this user and of this address."""
        await self.redis.call("DEL", *self._keys(username, address))
