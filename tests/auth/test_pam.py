"""Real PAM, with real accounts: right and wrong passwords, roles, and a reactor that never waits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from zope.interface import provider

from kimchi.errors import ServiceUnavailable, Unauthorized
from kimchid.auth.pam import PamLogin
from tests.authfixtures import PamUsers

ADMIN_GROUPS = ("kimchi-admin", "sudo", "wheel")


def make_login(pam_users: PamUsers, threads: int = 4, queue: int = 64) -> PamLogin:
    from twisted.internet import reactor

    login = PamLogin(pam_users.service, ADMIN_GROUPS, reactor, threads=threads, queue=queue)
    login.startService()
    return login


@pytest_twisted.async_yield_fixture
async def login(pam_users: PamUsers) -> AsyncIterator[PamLogin]:
    service = make_login(pam_users)
    yield service
    await service.stopService()


async def refused(d: Any) -> Exception:
    try:
        await d
    except Exception as e:
        return e
    raise AssertionError("the login was accepted")


@pytest_twisted.ensureDeferred
async def test_the_right_password_gives_groups_and_role(login: PamLogin, pam_users: PamUsers):
    user = await login.authenticate(pam_users.user.name, pam_users.user.password, "192.0.2.1")
    assert user.username == pam_users.user.name
    assert user.groups[0] == pam_users.user.name  # the primary group comes first
    assert user.role == "user"
    admin = await login.authenticate(pam_users.admin.name, pam_users.admin.password)
    assert "kimchi-admin" in admin.groups and admin.role == "admin"
    assert admin.to_json() == {"username": pam_users.admin.name, "groups": list(admin.groups),
                               "role": "admin"}


@pytest_twisted.ensureDeferred
async def test_wrong_password_unknown_user_and_garbage_get_one_answer(
        login: PamLogin, pam_users: PamUsers):
    attempts = [
        (pam_users.user.name, "not-" + pam_users.user.password),
        (pam_users.user.name, ""),
        ("kimchi-nobody-here", "whatever"),
        (pam_users.user.name, "with\x00nul"),
        ("", "x"),
        ("-rf", "x"),
        ("x" * 1000, "x"),
    ]
    errors = await defer.gatherResults([
        defer.Deferred.fromCoroutine(refused(login.authenticate(u, p))) for u, p in attempts])
    for e in errors:
        assert isinstance(e, Unauthorized) and e.errcode == "KCHAUTH0001E", e
        assert e.status == 401


@pytest_twisted.ensureDeferred
async def test_passwords_never_reach_the_log(login: PamLogin, pam_users: PamUsers):
    seen: list[str] = []

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        seen.append(formatEvent(event) + repr(event))

    globalLogPublisher.addObserver(observe)
    try:
        await refused(login.authenticate(pam_users.user.name, "Sekrit-guess-1"))
        await login.authenticate(pam_users.user.name, pam_users.user.password)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert any(pam_users.user.name in line for line in seen)  # it did log the attempts
    assert not any("Sekrit-guess-1" in line or pam_users.user.password in line
                   for line in seen)


@pytest_twisted.ensureDeferred
async def test_20_bad_logins_at_once_never_stall_the_reactor(pam_users: PamUsers):
    """PAM waits ~2 s per failure; a blocked reactor would show as a gap of seconds."""
    from twisted.internet import reactor

    login = make_login(pam_users, threads=8)
    ticks: list[float] = []
    ticker = task.LoopingCall(lambda: ticks.append(time.monotonic()))
    ticker.clock = reactor
    ticker.start(0.01)
    started = time.monotonic()
    try:
        floods = [defer.Deferred.fromCoroutine(refused(login.authenticate(
            pam_users.user.name, f"guess-{i}"))) for i in range(20)]
        # a right password during the flood is still answered (after a thread frees up)
        good = defer.Deferred.fromCoroutine(login.authenticate(
            pam_users.admin.name, pam_users.admin.password))
        errors = await defer.gatherResults(floods)
        assert (await good).role == "admin"
    finally:
        ticker.stop()
        await login.stopService()
    took = time.monotonic() - started
    assert all(isinstance(e, Unauthorized) for e in errors)
    assert took > 1.5, f"PAM did not delay the failures ({took:.2f} s): the test proves nothing"
    gaps = sorted(b - a for a, b in zip(ticks, ticks[1:], strict=False))
    assert len(ticks) > took / 0.01 * 0.5
    # One PAM failure on the reactor would stall it ~2 s.  A busy 2-core machine delays a
    # 10 ms timer by up to ~50 ms even with no PAM at all, so: nearly every tick on time,
    # and no gap near a PAM delay.
    p95 = gaps[int(len(gaps) * 0.95)]
    assert p95 < 0.05, f"95th percentile gap {p95 * 1000:.0f} ms"
    assert gaps[-1] < 0.3, f"the reactor stalled for {gaps[-1] * 1000:.0f} ms"


@pytest_twisted.ensureDeferred
async def test_a_full_queue_refuses_at_once_instead_of_waiting(pam_users: PamUsers):
    login = make_login(pam_users, threads=1, queue=1)
    try:
        first = defer.Deferred.fromCoroutine(refused(login.authenticate(
            pam_users.user.name, "bad-1")))
        second = defer.Deferred.fromCoroutine(refused(login.authenticate(
            pam_users.user.name, "bad-2")))
        assert login.pending == 2
        t0 = time.monotonic()
        busy = await refused(login.authenticate(pam_users.user.name, pam_users.user.password))
        assert time.monotonic() - t0 < 0.05
        assert isinstance(busy, ServiceUnavailable) and busy.errcode == "KCHAUTH0009E"
        assert busy.headers["Retry-After"]
        await defer.gatherResults([first, second])
        assert login.pending == 0
    finally:
        await login.stopService()


@pytest_twisted.ensureDeferred
async def test_identity_without_a_password_follows_the_groups(login: PamLogin,
                                                              pam_users: PamUsers):
    admin = await login.identity(pam_users.admin.name)
    assert admin is not None and admin.role == "admin"
    user = await login.identity(pam_users.user.name)
    assert user is not None and user.role == "user"
    assert await login.identity("kimchi-nobody-here") is None


@pytest_twisted.ensureDeferred
async def test_stopping_waits_for_the_checks_in_flight(pam_users: PamUsers):
    login = make_login(pam_users, threads=2)
    pending = defer.Deferred.fromCoroutine(refused(login.authenticate(
        pam_users.user.name, "bad")))
    await login.stopService()
    assert pending.called  # ended before the service said it had stopped
    assert isinstance(await pending, Unauthorized)
    late = await refused(login.authenticate(pam_users.user.name, pam_users.user.password))
    assert isinstance(late, ServiceUnavailable)


@pytest.mark.parametrize("service", ["kimchi-no-such-service"])
@pytest_twisted.ensureDeferred
async def test_an_unknown_pam_service_refuses_everyone(pam_users: PamUsers, service: str):
    from twisted.internet import reactor

    login = PamLogin(service, ADMIN_GROUPS, reactor, threads=1)
    login.startService()
    try:
        # falls back to /etc/pam.d/other, which (on Debian) checks the password too, or
        # denies: either way a wrong password never passes
        e = await refused(login.authenticate(pam_users.user.name, "bad"))
        assert isinstance(e, Unauthorized)
    finally:
        await login.stopService()
