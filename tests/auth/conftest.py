"""Fixtures of the login tests: real PAM accounts and a real Redis client."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest_twisted
from twisted.internet import task

from kimchi.bus.twisted import RedisClient
from tests.authfixtures import pam_users  # noqa: F401  (a fixture)
from tests.conftest import RedisServer


@pytest_twisted.async_yield_fixture
async def redis_client(redis_db: RedisServer) -> AsyncIterator[RedisClient]:
    """The daemon's own Redis client, connected to the test's (flushed) Redis."""
    from twisted.internet import reactor

    client = RedisClient(redis_db.url, 2.0, reactor)
    client.startService()
    deadline = time.monotonic() + 10
    while not client.up:
        assert time.monotonic() < deadline, f"redis client never came up: {client.error}"
        await task.deferLater(reactor, 0.02, lambda: None)  # type: ignore[arg-type]
    yield client
    await client.stopService()
