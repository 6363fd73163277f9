"""Failed-login throttling in a real Redis: per user, per address, growing delays, no waiting."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import defer, task

from kimchid.adapters.redis import RedisClient
from kimchid.auth.throttle import LoginThrottle, address_bucket
from kimchid.errors import TooManyRequests
from tests.conftest import RedisServer

NOW = 1_800_000_000.0


def throttle(redis: RedisClient, **kw: float) -> tuple[LoginThrottle, task.Clock]:
    clock = task.Clock()
    clock.advance(NOW)
    args = {"free": 5, "base": 1.0, "max_delay": 8.0, "window": 900.0, **kw}
    return LoginThrottle(redis, "kimchi:", clock, **args), clock  # type: ignore[arg-type]


async def refused(d: object) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as e:
        await d  # type: ignore[misc]
    return e.value


@pytest_twisted.ensureDeferred
async def test_delays_grow_after_the_free_attempts(redis_client: RedisClient):
    t, clock = throttle(redis_client)
    for _ in range(5):
        await t.attempt("alice", "192.0.2.1")
    e = await refused(t.attempt("alice", "192.0.2.1"))
    assert e.errcode == "KCHAUTH0008E" and e.status == 429
    assert e.retry_after == 1 and e.headers == {"Retry-After": "1"}
    assert "1 seconds" in e.reason
    waits = []
    for _ in range(6):
        wait = await t.retry_after("alice", "192.0.2.1")
        waits.append(wait)
        clock.advance(wait)
        await t.attempt("alice", "192.0.2.1")
    assert waits == [1, 2, 4, 8, 8, 8]  # doubling, up to max_delay


@pytest_twisted.ensureDeferred
async def test_an_early_attempt_is_refused_but_not_counted(redis_client: RedisClient):
    t, clock = throttle(redis_client)
    for _ in range(6):
        clock.advance(2)
        await t.attempt("alice", "192.0.2.1")
    clock.advance(1)
    e = await refused(t.attempt("alice", "192.0.2.1"))
    assert e.retry_after == 1  # 2 s after the last counted attempt, 1 s of them gone
    clock.advance(1)
    await t.attempt("alice", "192.0.2.1")  # the refused one did not make it longer


@pytest_twisted.ensureDeferred
async def test_success_resets(redis_client: RedisClient):
    t, _ = throttle(redis_client)
    for _ in range(5):
        await t.attempt("alice", "192.0.2.1")
    await t.succeeded("alice", "192.0.2.1")
    assert await t.retry_after("alice", "192.0.2.1") == 0
    for _ in range(5):
        await t.attempt("alice", "192.0.2.1")


@pytest_twisted.ensureDeferred
async def test_one_address_guessing_many_users_is_slowed(redis_client: RedisClient):
    t, _ = throttle(redis_client)
    for i in range(5):
        await t.attempt(f"user{i}", "198.51.100.9")
    await refused(t.attempt("someone-else", "198.51.100.9"))
    await t.attempt("someone-else", "198.51.100.10")  # another address is not


@pytest_twisted.ensureDeferred
async def test_one_user_guessed_from_many_addresses_is_slowed(redis_client: RedisClient):
    t, _ = throttle(redis_client)
    for i in range(5):
        await t.attempt("alice", f"203.0.113.{i}")
    await refused(t.attempt("alice", "203.0.113.99"))
    await refused(t.attempt("ALICE", "203.0.113.99"))  # case does not make a new user
    await t.attempt("bob", "203.0.113.99")  # nobody else waits


@pytest_twisted.ensureDeferred
async def test_parallel_guesses_cannot_slip_through(redis_client: RedisClient):
    t, _ = throttle(redis_client)
    async def one() -> Exception | None:
        try:
            await t.attempt("alice", "192.0.2.1")
        except Exception as e:
            return e
        return None

    started = time.monotonic()
    results = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(one()) for _ in range(20)])
    assert time.monotonic() - started < 1  # refused at once: nobody is made to wait
    assert results.count(None) == 5
    assert sum(isinstance(e, TooManyRequests) for e in results) == 15


@pytest_twisted.ensureDeferred
async def test_failures_are_forgotten_after_the_window(redis_client: RedisClient,
                                                       redis_db: RedisServer):
    t, clock = throttle(redis_client, window=600)
    for _ in range(6):
        clock.advance(1)
        await t.attempt("alice", "192.0.2.1")
    ttl = redis_db.client().pttl("kimchi:login-fail:user:alice")
    assert 600_000 < ttl <= 602_000  # the window, and the delay still to run
    clock.advance(602)
    await t.attempt("alice", "192.0.2.1")
    for _ in range(4):  # the count started again
        await t.attempt("alice", "192.0.2.1")
    await refused(t.attempt("alice", "192.0.2.1"))


def test_address_buckets():
    assert address_bucket("192.0.2.1") == "192.0.2.1"
    assert address_bucket("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_bucket("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_bucket("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_bucket("") == "unknown"
    assert address_bucket("unix-socket") == "unix-socket"
