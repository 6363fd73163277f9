"""Failed-login throttling in a real Redis: per user and address, growing delays, no waiting;
and the gate that puts it in front of PAM for HTTP Basic."""

from __future__ import annotations

import base64
import inspect
import time
from typing import Any, cast

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.web.iweb import IRequest
from twisted.web.test.requesthelper import DummyRequest

from kimchi.bus.twisted import RedisClient
from kimchi.errors import ServiceUnavailable, TooManyRequests, Unauthorized
from kimchid.api.gate import Gate
from kimchid.auth.pam import PamLogin
from kimchid.auth.policy import Identity
from kimchid.auth.throttle import LoginThrottle, address_bucket
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
async def test_failures_for_one_user_never_slow_another_from_that_address(
        redis_client: RedisClient):
    t, _ = throttle(redis_client)
    for _ in range(10):  # someone behind the same address guessing (or mistyping) bob's
        try:
            await t.attempt("bob", "198.51.100.9")
        except TooManyRequests:
            pass
    await refused(t.attempt("bob", "198.51.100.9"))
    for _ in range(10):  # the admin, and everyone else there, still get in
        await t.attempt("admin", "198.51.100.9")
        await t.succeeded("admin", "198.51.100.9")
    await t.attempt("carol", "198.51.100.9")
    await t.attempt("bob", "198.51.100.10")  # bob himself, from a client that has not failed


@pytest_twisted.ensureDeferred
async def test_one_user_guessed_from_many_addresses_gets_one_guess_per_address(
        redis_client: RedisClient):
    t, clock = throttle(redis_client)
    for i in range(5):  # five addresses, each one failed guess
        await t.attempt("alice", f"203.0.113.{i}")
    # each of them has failed, and alice has had 5 failures: they wait as long as hers say
    e = await refused(t.attempt("alice", "203.0.113.0"))
    assert e.retry_after == 1
    await refused(t.attempt("ALICE", "203.0.113.1"))  # case does not make a new user
    for i in range(5, 10):  # a client that has not failed is never refused
        await t.attempt("alice", f"203.0.113.{i}")
    assert await t.retry_after("alice", "203.0.113.0") == 8  # 2**(10 - 5), up to max_delay
    assert await t.retry_after("alice", "192.0.2.77") == 0  # alice's own laptop gets in
    await t.attempt("bob", "203.0.113.0")  # nobody else waits
    clock.advance(8)
    await t.attempt("alice", "203.0.113.0")  # one more guess from there, then wait again
    await refused(t.attempt("alice", "203.0.113.0"))


@pytest_twisted.ensureDeferred
async def test_a_success_takes_the_clients_failures_off_the_user(redis_client: RedisClient):
    t, clock = throttle(redis_client)
    for _ in range(3):
        await t.attempt("alice", "192.0.2.1")  # her own typos
    for i in range(3):
        await t.attempt("alice", f"203.0.113.{i}")  # someone else's guesses
    clock.advance(10)
    await t.attempt("alice", "192.0.2.1")
    await t.succeeded("alice", "192.0.2.1")
    assert await t.retry_after("alice", "192.0.2.1") == 0
    # her 4 attempts from there are forgotten, the 3 guesses are not: 2 free failures left
    await t.attempt("alice", "203.0.113.0")
    await t.attempt("alice", "203.0.113.0")
    await refused(t.attempt("alice", "203.0.113.0"))


@pytest_twisted.ensureDeferred
async def test_an_attempt_that_was_never_checked_is_given_back(redis_client: RedisClient):
    t, _ = throttle(redis_client)
    for _ in range(20):  # PAM busy every time: none of these was a failure
        await t.attempt("alice", "192.0.2.1")
        await t.unchecked("alice", "192.0.2.1")
    assert await t.retry_after("alice", "192.0.2.1") == 0
    for _ in range(5):
        await t.attempt("alice", "192.0.2.1")
    await refused(t.attempt("alice", "192.0.2.1"))


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


# The gate in front of PAM: HTTP Basic requests, a real throttle, a counting PamLogin.

class CountingPam:
    """A stand-in for :class:`PamLogin` that counts its checks and answers them when told.

    Accepts ``password`` for every user named in ``accounts``; ``busy`` makes it answer
    503 as the real one does when its queue is full.
    """

    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = accounts
        self.checks: list[tuple[str, str]] = []  # (username, address) of each check
        self.held: list[defer.Deferred[None]] = []
        self.hold = False
        self.busy = False

    def release(self) -> None:
        held, self.held = self.held, []
        for d in held:
            d.callback(None)

    async def authenticate(self, username: str, password: str, address: str = "") -> Identity:
        if self.busy:
            raise ServiceUnavailable("KCHAUTH0009E")
        self.checks.append((username, address))
        if self.hold:
            d: defer.Deferred[None] = defer.Deferred()
            self.held.append(d)
            await d
        if self.accounts.get(username) != password:
            raise Unauthorized("KCHAUTH0001E")
        return Identity(username, (username,), "admin")

    async def identity(self, username: str) -> Identity | None:
        return Identity(username, (username,), "admin") if username in self.accounts else None


def test_the_counting_pam_answers_like_the_real_one():
    for name in ("authenticate", "identity"):
        assert (inspect.signature(getattr(CountingPam, name))
                == inspect.signature(getattr(PamLogin, name))), name


def basic(username: str, password: str, address: str = "192.0.2.1",
          ui: bool = False) -> IRequest:
    request = DummyRequest([b"vms"])
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    request.requestHeaders.setRawHeaders(b"authorization", [f"Basic {token}".encode()])
    if ui:
        request.requestHeaders.setRawHeaders(b"x-requested-with", [b"XMLHttpRequest"])
    request.client = IPv4Address("TCP", address, 40000)
    return cast(IRequest, request)  # the part of IRequest the gate reads


def gate(redis: RedisClient, pam: CountingPam) -> Gate:
    t, clock = throttle(redis)
    return Gate(pam=pam, sessions=None, tokens=None,  # type: ignore[arg-type]
                throttle=t, clock=clock)


async def outcome(d: defer.Deferred[Any]) -> Any:
    try:
        return await d
    except Exception as e:
        return e


@pytest_twisted.ensureDeferred
async def test_concurrent_first_requests_share_one_password_check(redis_client: RedisClient):
    pam = CountingPam({"admin": "secret"})
    g = gate(redis_client, pam)
    pam.hold = True  # PAM takes its time: all twelve arrive before it answers
    requests = [defer.Deferred.fromCoroutine(outcome(defer.Deferred.fromCoroutine(
        g.identify(basic("admin", "secret"))))) for _ in range(12)]
    await task.deferLater(reactor(), 0.1, lambda: None)
    assert len(pam.checks) == 1
    pam.release()
    results = await defer.gatherResults(requests)
    assert [r if isinstance(r, Exception) else r[0].username for r in results] == ["admin"] * 12
    await g.identify(basic("admin", "secret"))  # and then remembered
    assert len(pam.checks) == 1


@pytest_twisted.ensureDeferred
async def test_concurrent_sign_ins_with_the_same_password_share_one_check(
        redis_client: RedisClient):
    pam = CountingPam({"admin": "secret"})
    g = gate(redis_client, pam)
    pam.hold = True  # a double-clicked button, a reloaded tab: POST /login, many at once
    logins = [defer.Deferred.fromCoroutine(outcome(defer.Deferred.fromCoroutine(
        g.login(basic("admin", "secret"), "admin", "secret")))) for _ in range(12)]
    await task.deferLater(reactor(), 0.1, lambda: None)
    pam.hold = False
    pam.release()
    results = await defer.gatherResults(logins)
    assert [getattr(r, "username", r) for r in results] == ["admin"] * 12
    assert len(pam.checks) == 1
    # from another address, the same credentials are that address's own check
    await g.login(basic("admin", "secret", address="192.0.2.2"), "admin", "secret")
    assert pam.checks == [("admin", "192.0.2.1"), ("admin", "192.0.2.2")]


@pytest_twisted.ensureDeferred
async def test_a_shared_wrong_password_is_one_failure_and_a_401_for_each(
        redis_client: RedisClient):
    pam = CountingPam({"admin": "secret"})
    g = gate(redis_client, pam)
    pam.hold = True
    requests = [defer.Deferred.fromCoroutine(outcome(defer.Deferred.fromCoroutine(
        g.identify(basic("admin", "typo", ui=i % 2 == 0))))) for i in range(6)]
    await task.deferLater(reactor(), 0.1, lambda: None)
    pam.release()
    results = await defer.gatherResults(requests)
    assert all(isinstance(e, Unauthorized) and e.errcode == "KCHAUTH0001E" for e in results)
    # each answer is its own: the browser's dialog for a script, none for the UI's own calls
    assert ["WWW-Authenticate" in e.headers for e in results] == [False, True] * 3
    assert len(pam.checks) == 1
    assert await g.throttle.retry_after("admin", "192.0.2.1") == 0  # one failure of five


@pytest_twisted.ensureDeferred
async def test_a_client_going_away_does_not_fail_the_requests_sharing_its_check(
        redis_client: RedisClient):
    pam = CountingPam({"admin": "secret"})
    g = gate(redis_client, pam)
    pam.hold = True
    first = defer.Deferred.fromCoroutine(g.identify(basic("admin", "secret")))
    second = defer.Deferred.fromCoroutine(g.identify(basic("admin", "secret")))
    await task.deferLater(reactor(), 0.1, lambda: None)
    first.cancel()  # what Klein does when the client disconnects
    first.addErrback(lambda f: f.trap(defer.CancelledError))
    pam.release()
    who, _ambient = await second
    assert who.username == "admin" and len(pam.checks) == 1


@pytest_twisted.ensureDeferred
async def test_wrong_passwords_for_a_user_do_not_lock_the_admin_out_of_the_address(
        redis_client: RedisClient):
    pam = CountingPam({"admin": "secret", "x": "xs"})
    g = gate(redis_client, pam)
    answers = [await outcome(defer.Deferred.fromCoroutine(g.identify(basic("x", f"guess{i}"))))
               for i in range(10)]
    assert [type(a).__name__ for a in answers] == ["Unauthorized"] * 5 + ["TooManyRequests"] * 5
    assert answers[-1].headers["Retry-After"] == "1"
    assert len(pam.checks) == 5  # refused guesses never reach PAM
    who, _ambient = await g.identify(basic("admin", "secret"))
    assert who.username == "admin"


@pytest_twisted.ensureDeferred
async def test_a_busy_pam_is_not_counted_as_failures(redis_client: RedisClient):
    pam = CountingPam({"admin": "secret"})
    g = gate(redis_client, pam)
    pam.busy = True
    for _ in range(10):
        with pytest.raises(ServiceUnavailable):
            await g.identify(basic("admin", "secret"))
    pam.busy = False
    who, _ambient = await g.identify(basic("admin", "secret"))
    assert who.username == "admin"


def reactor() -> Any:
    from twisted.internet import reactor as global_reactor

    return global_reactor
