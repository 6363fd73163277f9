"""Sessions in a real Redis: hashed ids, idle and absolute expiry, logout, list and revoke."""

from __future__ import annotations

import time

import pytest_twisted
from twisted.internet import task

from kimchi.bus.twisted import RedisClient
from kimchi.errors import NotFound
from kimchid.auth.credentials import digest
from kimchid.auth.policy import Identity
from kimchid.auth.sessions import (
    COOKIE_NAME,
    SessionStore,
    cleared_cookie,
    session_cookie,
)
from tests.conftest import RedisServer

ALICE = Identity("alice", ("alice", "ops"), "user")
BOB = Identity("bob", ("bob", "kimchi-admin"), "admin")
NOW = 1_800_000_000.0
PREFIX = "kimchi:"


def store(redis: RedisClient, idle: float = 60.0, max_age: float = 3600.0,
          clock: task.Clock | None = None) -> tuple[SessionStore, task.Clock]:
    if clock is None:
        clock = task.Clock()
        clock.advance(NOW)
    return SessionStore(redis, PREFIX, clock, idle, max_age), clock


@pytest_twisted.ensureDeferred
async def test_a_session_is_found_by_its_cookie_and_redis_holds_no_cookie(
        redis_client: RedisClient, redis_db: RedisServer):
    sessions, _ = store(redis_client)
    secret, created = await sessions.create(ALICE, address="192.0.2.7", user_agent="curl/8")
    assert len(secret) == 43  # 256 bits, URL-safe base64
    found = await sessions.lookup(secret)
    assert found is not None and found.identity == ALICE
    assert found.handle == digest(secret) == created.handle
    assert found.expires_on == NOW + 60
    assert found.expires_on_header == "2027-01-15T08:01:00.000Z"
    body = found.to_json()
    assert body["username"] == "alice" and body["role"] == "user"
    assert body["address"] == "192.0.2.7" and body["id"] == found.handle

    r = redis_db.client()
    dump = repr({k: r.type(k) == "hash" and r.hgetall(k) or r.smembers(k) for k in r.keys()})
    assert secret not in dump and found.handle in dump
    assert 0 < r.pttl(f"{PREFIX}session:{found.handle}") <= 61_000


@pytest_twisted.ensureDeferred
async def test_use_keeps_a_session_alive_idleness_ends_it(redis_client: RedisClient,
                                                          redis_db: RedisServer):
    sessions, clock = store(redis_client, idle=60)
    secret, s = await sessions.create(ALICE)
    for _ in range(5):  # used every 50 s: lives well past the idle timeout
        clock.advance(50)
        found = await sessions.lookup(secret)
        assert found is not None
        assert found.expires_on == clock.seconds() + 60
    clock.advance(60)
    assert await sessions.lookup(secret) is None
    assert not redis_db.client().exists(f"{PREFIX}session:{s.handle}")
    assert not redis_db.client().exists(f"{PREFIX}user-sessions:alice")


@pytest_twisted.ensureDeferred
async def test_the_absolute_timeout_ends_a_session_in_use(redis_client: RedisClient):
    sessions, clock = store(redis_client, idle=60, max_age=150)
    secret, _ = await sessions.create(ALICE)
    clock.advance(50)
    assert (await sessions.lookup(secret)).expires_on == NOW + 110  # type: ignore[union-attr]
    clock.advance(50)
    s = await sessions.lookup(secret)
    assert s is not None and s.expires_on == NOW + 150  # the absolute end comes first now
    clock.advance(49.9)
    assert await sessions.lookup(secret) is not None
    clock.advance(0.1)
    assert await sessions.lookup(secret) is None


@pytest_twisted.ensureDeferred
async def test_a_peek_does_not_refresh(redis_client: RedisClient):
    sessions, clock = store(redis_client, idle=60)
    secret, _ = await sessions.create(ALICE)
    clock.advance(50)
    assert await sessions.lookup(secret, touch=False) is not None
    clock.advance(10)
    assert await sessions.lookup(secret) is None


@pytest_twisted.ensureDeferred
async def test_redis_forgets_an_ended_session_by_itself(redis_client: RedisClient,
                                                        redis_db: RedisServer):
    from twisted.internet import reactor

    sessions = SessionStore(redis_client, PREFIX, reactor, idle=0.2, max_age=10)
    _, s = await sessions.create(ALICE)
    key = f"{PREFIX}session:{s.handle}"
    assert redis_db.client().exists(key)
    deadline = time.monotonic() + 5
    while redis_db.client().exists(key):  # the TTL: 0.2 s and a second's grace
        assert time.monotonic() < deadline, "the session outlived its TTL"
        await task.deferLater(reactor, 0.1, lambda: None)  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_another_daemon_sees_the_session(redis_client: RedisClient,
                                               redis_db: RedisServer):
    from twisted.internet import reactor

    other_client = RedisClient(redis_db.url, 2.0, reactor)
    other_client.startService()
    try:
        while not other_client.up:
            await task.deferLater(reactor, 0.02, lambda: None)  # type: ignore[arg-type]
        here, clock = store(redis_client)
        there, _ = store(other_client, clock=clock)
        secret, _ = await here.create(BOB)
        found = await there.lookup(secret)
        assert found is not None and found.identity == BOB
        await there.delete(secret)  # logged out through the other daemon
        assert await here.lookup(secret) is None
    finally:
        await other_client.stopService()


@pytest_twisted.ensureDeferred
async def test_logout_ends_the_session(redis_client: RedisClient):
    sessions, _ = store(redis_client)
    secret, _ = await sessions.create(ALICE)
    other, _ = await sessions.create(ALICE)
    await sessions.delete(secret)
    assert await sessions.lookup(secret) is None
    assert await sessions.lookup(other) is not None  # the user's other login stays
    await sessions.delete(secret)  # twice, or a cookie never seen: nothing happens
    await sessions.delete(None)


@pytest_twisted.ensureDeferred
async def test_list_and_revoke_a_users_sessions(redis_client: RedisClient):
    sessions, clock = store(redis_client)
    a1, s1 = await sessions.create(ALICE, address="192.0.2.1")
    clock.advance(1)
    a2, s2 = await sessions.create(ALICE, address="192.0.2.2")
    b1, _ = await sessions.create(BOB)
    listed = await sessions.list_for("alice")
    assert [s.handle for s in listed] == [s1.handle, s2.handle]
    assert a1 not in repr([s.to_json() for s in listed])

    await sessions.revoke(s1.handle)
    assert await sessions.lookup(a1) is None
    try:
        await sessions.revoke(s1.handle)
        raise AssertionError("revoked twice")
    except NotFound as e:
        assert e.errcode == "KCHAUTH0013E"

    assert await sessions.revoke_all("alice") == 1
    assert await sessions.lookup(a2) is None
    assert await sessions.list_for("alice") == []
    assert await sessions.lookup(b1) is not None


@pytest_twisted.ensureDeferred
async def test_expired_sessions_leave_the_list(redis_client: RedisClient):
    sessions, clock = store(redis_client, idle=60)
    await sessions.create(ALICE)
    clock.advance(30)
    _, fresh = await sessions.create(ALICE)
    clock.advance(40)
    assert [s.handle for s in await sessions.list_for("alice")] == [fresh.handle]


@pytest_twisted.ensureDeferred
async def test_cookies_that_are_not_ours(redis_client: RedisClient, redis_db: RedisServer):
    sessions, _ = store(redis_client)
    for cookie in (None, "", "x", "x" * 5000, "a b;c", "\u00e9\x00"):
        assert await sessions.lookup(cookie) is None
    # a damaged record is ended, not trusted
    redis_db.client().hset(f"{PREFIX}session:{digest('forged')}", mapping={
        "username": "root", "role": "admin"})
    assert await sessions.lookup("forged") is None
    assert not redis_db.client().exists(f"{PREFIX}session:{digest('forged')}")


def test_cookie_flags():
    c = session_cookie("abc")
    assert c.startswith(f"{COOKIE_NAME}=abc;")
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in c
    assert "Secure" not in session_cookie("abc", secure=False)
    gone = cleared_cookie()
    assert gone.startswith(f"{COOKIE_NAME}=;") and "Max-Age=0" in gone
