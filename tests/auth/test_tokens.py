"""API tokens in a real Redis: shown once, stored hashed, listed without secrets, revoked, expired."""

from __future__ import annotations

import hashlib

import pytest
import pytest_twisted
from twisted.internet import task

from kimchi.bus.twisted import RedisClient
from kimchi.errors import InvalidRequest, NotFound
from kimchid.auth.tokens import TOKEN_PREFIX, TokenStore
from tests.conftest import RedisServer

NOW = 1_800_000_000.0


def store(redis: RedisClient) -> tuple[TokenStore, task.Clock]:
    clock = task.Clock()
    clock.advance(NOW)
    return TokenStore(redis, "kimchi:", clock), clock


async def raises(exc: type[Exception], d: object) -> Exception:
    with pytest.raises(exc) as e:
        await d  # type: ignore[misc]
    return e.value


@pytest_twisted.ensureDeferred
async def test_a_token_is_shown_once_and_stored_hashed(redis_client: RedisClient,
                                                       redis_db: RedisServer):
    tokens, _ = store(redis_client)
    value, token = await tokens.create("backup script", "alice", created_by="root")
    assert value.startswith(TOKEN_PREFIX) and len(value) > 40
    assert token.expires is None and token.username == "alice"
    assert token.to_json() == {"id": token.id, "name": "backup script", "username": "alice",
                               "created_by": "root", "created": "2027-01-15T08:00:00.000Z",
                               "expires": None}
    found = await tokens.lookup(value)
    assert found == token

    r = redis_db.client()
    dump = repr([(k, r.hgetall(k)) for k in r.keys()])
    assert value not in dump
    assert hashlib.sha256(value.encode()).hexdigest() in dump
    listed = await tokens.list()
    assert listed == [token] and value not in repr([t.to_json() for t in listed])


@pytest_twisted.ensureDeferred
async def test_wrong_or_foreign_bearer_values_find_nothing(redis_client: RedisClient):
    tokens, _ = store(redis_client)
    value, _ = await tokens.create("t", "alice", "root")
    for bearer in (None, "", value[:-1], value + "x", value[len(TOKEN_PREFIX):],
                   TOKEN_PREFIX + "x" * 500):
        assert await tokens.lookup(bearer) is None


@pytest_twisted.ensureDeferred
async def test_revoked_tokens_stop_working_at_once(redis_client: RedisClient):
    tokens, _ = store(redis_client)
    v1, t1 = await tokens.create("one", "alice", "root")
    v2, t2 = await tokens.create("two", "bob", "root")
    await tokens.revoke(t1.id)
    assert await tokens.lookup(v1) is None
    assert await tokens.lookup(v2) == t2
    assert await tokens.list() == [t2]
    e = await raises(NotFound, tokens.revoke(t1.id))
    assert e.errcode == "KCHAUTH0010E"  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_a_token_expires(redis_client: RedisClient, redis_db: RedisServer):
    tokens, clock = store(redis_client)
    value, token = await tokens.create("ci", "alice", "root", expires_in=3600)
    assert token.expires == NOW + 3600
    assert token.to_json()["expires"] == "2027-01-15T09:00:00.000Z"
    assert 0 < redis_db.client().pttl(
        "kimchi:token:" + hashlib.sha256(value.encode()).hexdigest()) <= 3_601_000
    clock.advance(3599)
    assert await tokens.lookup(value) == token
    clock.advance(1)
    assert await tokens.lookup(value) is None
    assert await tokens.list() == []


@pytest_twisted.ensureDeferred
async def test_listing_by_user_oldest_first(redis_client: RedisClient):
    tokens, clock = store(redis_client)
    _, a1 = await tokens.create("a1", "alice", "root")
    clock.advance(1)
    _, b1 = await tokens.create("b1", "bob", "root")
    clock.advance(1)
    _, a2 = await tokens.create("a2", "alice", "root", expires_in=10)
    assert await tokens.list("alice") == [a1, a2]
    assert await tokens.list() == [a1, b1, a2]
    clock.advance(10)
    assert await tokens.list("alice") == [a1]


@pytest_twisted.ensureDeferred
async def test_bad_requests(redis_client: RedisClient):
    tokens, _ = store(redis_client)
    for name, expires_in in (("", None), ("x" * 65, None), ("tab\there", None),
                             ("ok", 0), ("ok", -5), ("ok", 20 * 366 * 86400)):
        e = await raises(InvalidRequest, tokens.create(name, "alice", "root", expires_in))
        assert e.errcode == "KCHAUTH0011E"  # type: ignore[attr-defined]
    assert await tokens.list() == []
